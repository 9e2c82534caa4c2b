"""``lstm-pipeline train``: fit a model in a run directory (:func:`lstm_pipeline.training.train.train`)."""
from __future__ import annotations

import sys

from omegaconf import DictConfig

from ..training.malloc import tune_malloc
from ..training.preemption import Preempted
from ..training.train import train


def run(cfg: DictConfig) -> dict:
    """Train as configured; returns the run's metrics. Process-wide tuning (glibc malloc) belongs to
    the command, not to ``train()`` called from a notebook. ``train()`` runs the stages in order:
    ``open_run`` (run directory and lock), ``prepare_data``, ``build_task``, ``fit``, then on rank 0
    ``export_model`` (``<run>/model``; stale ``export/``/``eval*.json`` moved to ``stale/``) and
    ``print_sample``. A run stopped by SIGTERM/SIGINT (SLURM: SIGUSR1) prints one line with the command
    that resumes it and exits ``128 + signal`` (143, 130; :mod:`lstm_pipeline.training.preemption`)."""
    tune_malloc()
    try:
        return train(cfg)
    except Preempted as stop:
        print(f"lstm-pipeline train: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)
