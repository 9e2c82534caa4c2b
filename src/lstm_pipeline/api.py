"""Python entry points: run a command as the CLI does, from a notebook or a script.

>>> from lstm_pipeline.api import train
>>> result = train(["model.hidden_size=64", "trainer.max_steps=200"], run_dir="runs/nb")
>>> result.run_dir, result.metrics["val_loss"]
(PosixPath('runs/nb'), 2.31...)

``train`` composes ``conf/train.yaml`` with the same overrides the command line takes (Hydra
syntax; ``trainer.X=`` for any ``lightning.Trainer`` argument), checks them before any work, trains,
exports ``<run_dir>/model`` and returns the run directory and its metrics. Unlike the CLI it changes
nothing process-wide: no glibc malloc tuning (``lstm_pipeline.training.malloc.tune_malloc`` applies
it on request), no logging configuration, no working-directory change, and bad input raises an
exception (``ValueError``/``LookupError``/``FileNotFoundError`` with the CLI's one-line message)
instead of exiting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf, open_dict

from .config.overrides import compose, prepare, resolve_keeping_text


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path                  #: the run directory (checkpoints/, logs/, model/, .hydra/)
    metrics: dict[str, float]      #: last logged values (val_loss, val_bpc, train_loss, ...) and best_val_loss
    model_dir: Path = field(init=False)  #: the exported model (``lstm_pipeline.from_pretrained`` loads it)

    def __post_init__(self) -> None:
        self.model_dir = self.run_dir / "model"


def compose_train(overrides: Sequence[str] = (), run_dir: str | Path | None = None):
    """The composed ``train`` config for ``overrides`` (what ``lstm-pipeline train --cfg job`` shows),
    with ``run_dir`` set: the given one, else ``hydra.run.dir`` (``runs/<date>/<time>`` by default,
    or a ``hydra.run.dir=`` override). Raises the CLI's errors for unknown components or keys."""
    cfg = compose("train", prepare("train", overrides), return_hydra_config=True)
    directory = Path(run_dir) if run_dir is not None else Path(str(cfg.hydra.run.dir))
    task_overrides = list(cfg.hydra.overrides.task)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.run_dir = str(directory)
    resolve_keeping_text(cfg)  # typed text (prompt='${oc.env:HOME}') stays as typed
    return cfg, task_overrides


def train(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> TrainResult:
    """Train as ``lstm-pipeline train <overrides>`` does and return the run directory and metrics.

    ``overrides``: Hydra overrides, e.g. ``["model/cell=gru", "trainer.max_steps=500"]``;
    ``ckpt_path=<run dir>`` resumes that run in its own directory.
    ``run_dir``: where the run goes (default ``runs/<date>/<time>`` under the current directory).
    Raises ``ValueError``/``LookupError``/``FileNotFoundError`` naming the bad setting, before any
    work; no run directory is left behind then."""
    from .training.rundir import drop_unused_run_dir  # lightning: imported when training
    from .config.checks import check
    from .training.train import train as train_cfg

    cfg, task_overrides = compose_train(overrides, run_dir)
    check("train", cfg)  # before the run directory is made
    directory = Path(cfg.run_dir)
    try:
        hydra_dir = directory / ".hydra"  # as the CLI records it: `train ckpt_path=<run dir>` resumes it later
        hydra_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, hydra_dir / "config.yaml")
        if not (hydra_dir / "overrides.yaml").is_file() or not cfg.get("ckpt_path"):
            OmegaConf.save(OmegaConf.create([o for o in task_overrides if not o.startswith("hydra.")]),
                           hydra_dir / "overrides.yaml")
        metrics = train_cfg(cfg)
    except BaseException:
        drop_unused_run_dir(cfg)
        raise
    return TrainResult(directory, dict(metrics))
