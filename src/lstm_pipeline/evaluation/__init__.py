"""Scoring text with a model: the carried-state pass (:mod:`.scoring`), its loss figures
(:mod:`.metrics`), dynamic evaluation (:mod:`.dynamic`), the neural cache pointer (:mod:`.cache`)
and generation-quality metrics (:mod:`.generation_metrics`)."""
