"""Experiment loggers: the CSV logger (the default), and optional ones built only when their
package is installed, else a clear error."""
from __future__ import annotations

import csv as _csv
import importlib.util

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; a resumed run would
    lose the history of its earlier steps. This one starts from the existing file's columns and
    appends to it (adding columns rewrites the file with the old rows kept)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(_csv.reader(f), []))


class KeepingCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to ``<save_dir>/<name>/metrics.csv`` if it exists (``logger=csv``)."""

    @property
    @rank_zero_experiment  # as CSVLogger's own: the other ranks get a no-op experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def _require(module: str, logger: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"logger={logger} needs the '{module}' package: pip install {module} "
            f"(or pip install 'lstm-pipeline[{logger}]'), or choose logger=csv (always available)."
        )


def wandb(save_dir: str, project: str = "lstm-pipeline", name: str | None = None, offline: bool = True, **kw):
    _require("wandb", "wandb")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(save_dir=save_dir, project=project, name=name, offline=offline, **kw)


def mlflow(experiment_name: str = "lstm-pipeline", tracking_uri: str | None = None, run_name: str | None = None, **kw):
    _require("mlflow", "mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, run_name=run_name, **kw)


def tensorboard(save_dir: str, name: str = "tensorboard", version: str = "", **kw):
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        _require("tensorboard", "tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=save_dir, name=name, version=version, **kw)
