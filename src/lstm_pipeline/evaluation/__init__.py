"""Scoring text with a model: the carried-state pass every evaluation makes (:mod:`.stream`), plain
scoring with it (:mod:`.scoring`), its loss figures and totals (:mod:`.metrics`), dynamic evaluation
(:mod:`.dynamic`), the neural cache pointer (:mod:`.cache`) and generation-quality metrics
(:mod:`.generation_metrics`)."""
