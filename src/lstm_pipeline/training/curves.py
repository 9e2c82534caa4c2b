"""``lstm-pipeline plot run=...``: PNG curves (loss, bpc, learning rate, tokens/s) from each run's
``logs/metrics.csv`` (Lightning's CSV logger). Several runs overlay in one figure per metric:
one colour per run, training solid, validation dashed. matplotlib (extra ``plot``), Agg backend."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

from ..atomic import atomic_path
from ..extras import requires

#: metric -> the CSV columns that feed it (prefix match for the learning-rate monitor's "lr-<optim>")
METRIC_COLUMNS = {
    "loss": ("train_loss", "val_loss"),
    "bpc": ("train_bpc", "val_bpc"),
    "ppl": ("train_ppl", "val_ppl"),
    "acc": ("train_acc", "val_acc"),
    "lr": ("lr-",),
    "tokens_per_sec": ("tokens_per_sec",),
}
TITLES = {"loss": "loss (nats/token)", "bpc": "bits per character", "ppl": "perplexity", "acc": "accuracy",
          "lr": "learning rate", "tokens_per_sec": "training throughput (tokens/s)"}


def metrics_csv(run: str | Path) -> Path:
    run = Path(run).expanduser()
    for p in (run / "logs" / "metrics.csv", run / "metrics.csv"):
        if p.is_file():
            return p
    found = sorted(run.glob("**/metrics.csv")) if run.is_dir() else []
    if found:
        return found[-1]
    if not run.exists():
        raise FileNotFoundError(f"run={run} does not exist. Pass run=<a run directory written by 'lstm-pipeline train'>.")
    if not run.is_dir():
        raise FileNotFoundError(f"run={run} is a file, not a run directory. Pass run=<a run directory written by "
                                f"'lstm-pipeline train'>.")
    raise FileNotFoundError(f"run={run} has no metrics.csv (looked in {run / 'logs'} and below). Pass run=<a run "
                            f"directory trained with the csv logger (logger=csv, the default)>.")


def expand_runs(runs: Sequence[str | Path], labels: Sequence[str] | None = None
                ) -> tuple[list[Path], list[str] | None]:
    """A Hydra multirun directory (``runs/multirun/<date>/<time>``: job subdirectories, each a run)
    stands for all its jobs, labelled by their overrides (``model.hidden_size=512``) or subdirectory
    name; other entries are kept as given."""
    out: list[Path] = []
    names: list[str] = []
    for i, run in enumerate(runs):
        run = Path(run).expanduser()
        jobs = [] if (run / "logs" / "metrics.csv").is_file() or (run / "metrics.csv").is_file() else \
            sorted((d for d in run.iterdir() if d.is_dir() and (d / "logs" / "metrics.csv").is_file()),
                   key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name)) \
            if run.is_dir() else []
        if not jobs:
            out.append(run)
            names.append(labels[i] if labels else (run.name or str(run)))
            continue
        overrides = [_job_overrides(job) for job in jobs]
        common = set.intersection(*map(set, overrides))
        for job, given in zip(jobs, overrides):
            swept = " ".join(o for o in given if o not in common)  # what differs between the jobs
            out.append(job)
            names.append(f"{labels[i]}/{job.name}" if labels else f"{job.name}: {swept}" if swept else job.name)
    return out, names


def _job_overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path) if not str(o).startswith("hydra.")]


def read_series(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """column -> (steps, values), skipping the empty cells of Lightning's sparse CSV."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if not step:
                continue
            for col, val in row.items():
                if col in ("step", "epoch") or val in ("", None):
                    continue
                try:
                    v = float(val)
                except ValueError:
                    continue
                if math.isfinite(v):
                    xs, ys = series.setdefault(col, ([], []))
                    xs.append(float(step))
                    ys.append(v)
    return series


def columns_for(metric: str, available: Sequence[str]) -> list[str]:
    wanted = METRIC_COLUMNS.get(metric, (metric,))
    return [c for c in available for w in wanted if c == w or (w.endswith("-") and c.startswith(w))]


def plot_runs(runs: Sequence[str | Path], out_dir: str | Path, metrics: Sequence[str] = ("loss", "bpc", "lr", "tokens_per_sec"),
              labels: Sequence[str] | None = None) -> list[Path]:
    """Write one PNG per metric into directory ``out_dir`` (or, when ``out_dir`` names an image file
    such as ``curves.png``, one figure with a panel per metric there); return the files written.
    A multirun directory among ``runs`` stands for all its jobs. Raises ValueError when no metric
    is found, FileNotFoundError for a run without metrics.csv, ImportError without matplotlib."""
    plt = _pyplot()
    runs, labels = _checked_runs(runs, labels, metrics)
    data = [read_series(metrics_csv(r)) for r in runs]
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        written = _plot_panels(plt, data, labels, metrics, out_dir)
    else:
        written = _plot_files(plt, data, labels, metrics, out_dir)
    if not written:
        raise ValueError(f"None of the metrics {list(metrics)} is in the logs of {', '.join(map(str, runs))}; "
                         f"columns there: {', '.join(sorted({c for s in data for c in s}))}.")
    return written


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed). Raises ImportError naming the
    extra to install when matplotlib is missing."""
    matplotlib = requires("plots", "matplotlib", "lstm-pipeline plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _checked_runs(runs, labels, metrics) -> tuple[list[Path], list[str]]:
    """The runs (multirun directories expanded to their jobs) and a label for each. Raises
    ValueError for no run, a label count that does not match, or an unknown metric."""
    if not runs:
        raise ValueError("run= is empty: pass one run directory or a list, e.g. run=[runs/a,runs/b]")
    if labels and len(labels) != len(runs):
        raise ValueError(f"labels has {len(labels)} names for {len(runs)} runs; give one per run.")
    runs, labels = expand_runs(runs, labels)
    unknown = [m for m in metrics if m not in METRIC_COLUMNS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; choose from {', '.join(METRIC_COLUMNS)}.")
    return runs, labels


def _draw(ax, metric: str, data: list[dict], labels: Sequence[str]) -> int:
    """Plot every run's columns for ``metric`` on ``ax`` (validation dashed), one colour per
    run, and label the axes; returns how many lines were drawn (0: nothing labelled)."""
    drawn = 0
    for i, (series, label) in enumerate(zip(data, labels)):
        color = f"C{i % 10}"
        for col in columns_for(metric, list(series)):
            xs, ys = series[col]
            style = "--" if col.startswith("val_") else "-"
            marker = "o" if col.startswith("val_") and len(xs) < 30 else None
            ax.plot(xs, ys, style, color=color, marker=marker, markersize=3, linewidth=1.4,
                    label=f"{label}: {col}")
            drawn += 1
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel(TITLES[metric])
        ax.set_title(TITLES[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return drawn


def _save(fig, path: Path) -> None:
    """``fig.savefig`` whole or not at all (a temporary sibling renamed into place); the format is the
    suffix's (png without one)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png")


def _plot_files(plt, data: list[dict], labels: Sequence[str], metrics: Sequence[str], out_dir: Path) -> list[Path]:
    """One ``<metric>.png`` per metric found, in directory ``out_dir`` (created); the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        if not _draw(ax, metric, data, labels):
            plt.close(fig)
            continue
        fig.tight_layout()
        path = out_dir / f"{metric}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def _plot_panels(plt, data: list[dict], labels: Sequence[str], metrics: Sequence[str], out: Path) -> list[Path]:
    """One figure in image file ``out``, a panel per metric found; ``[out]``, or [] when no
    metric is found."""
    present = [m for m in metrics if any(columns_for(m, list(s)) for s in data)]
    fig, axes = plt.subplots(len(present) or 1, 1, figsize=(7, 3.4 * max(len(present), 1)), dpi=110,
                             squeeze=False)
    for metric, ax in zip(present, axes[:, 0]):
        _draw(ax, metric, data, labels)
    if not present:
        return []
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return [out]
