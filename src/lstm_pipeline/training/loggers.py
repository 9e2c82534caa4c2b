"""Optional experiment loggers: built only when their package is installed, else a clear error."""
from __future__ import annotations

import importlib.util


def _require(module: str, logger: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"logger={logger} needs the '{module}' package: pip install {module} "
            f"(or pip install 'lstm-pipeline[{logger}]'), or choose logger=csv / logger=tensorboard."
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
