"""``lstm-pipeline train``: fit a model in a run directory (:func:`lstm_pipeline.training.train.train`)."""
from __future__ import annotations

from omegaconf import DictConfig

from ..training.malloc import tune_malloc
from ..training.train import train


def run(cfg: DictConfig) -> dict:
    """Train as configured; returns the run's metrics. Process-wide tuning (glibc malloc) belongs to
    the command, not to ``train()`` called from a notebook."""
    tune_malloc()
    return train(cfg)
