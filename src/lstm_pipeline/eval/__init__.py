"""Evaluation methods beyond the plain carried-state pass of ``lstm_pipeline.evaluation``:
dynamic evaluation, the neural cache pointer and generation-quality metrics."""
