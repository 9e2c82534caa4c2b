"""``lstm-pipeline plot run=<run> [run=[a,b]] [metrics=[...]] [out=...]``: PNG training curves."""
from __future__ import annotations

from pathlib import Path

from ..training.curves import plot_runs


def run(cfg) -> list[Path]:
    """PNG curves of ``cfg.run`` (one run or a list, overlaid); returns the files written."""
    from omegaconf import ListConfig

    runs = list(cfg.run) if isinstance(cfg.run, (list, ListConfig)) else [cfg.run]
    out = Path(cfg.out) if cfg.out else Path(runs[0]) / "plots"  # out=<file>.png: one file, a panel per metric
    labels = list(cfg.labels) if cfg.labels else None
    written = plot_runs(runs, out, list(cfg.metrics), labels)
    for p in written:
        print(f"wrote {p}")
    return written
