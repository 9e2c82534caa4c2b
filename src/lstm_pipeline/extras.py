"""Optional dependencies, grouped by use into the package's extras (``pip install 'lstm-pipeline[<extra>]'``).

The core install trains, generates, evaluates and exports to safetensors; a feature that needs more
asks for it through :func:`requires`, which raises :class:`MissingExtraError` (one line naming the
extra to install) when the module is missing. The table below is the single source of which extra
provides which module; ``pyproject.toml``'s ``[project.optional-dependencies]`` lists the same.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: extra -> what it is for (the error message says it)
EXTRAS = {
    "hf": "the transformers adapter (AutoModelForCausalLM, pipeline)",
    "serve": "lstm-pipeline serve (the OpenAI-compatible HTTP API)",
    "onnx": "export format=onnx (and its int8 quantisation)",
    "plots": "lstm-pipeline plot",
    "tensorboard": "logger=tensorboard",
    "mlflow": "logger=mlflow",
    "wandb": "logger=wandb",
}


class MissingExtraError(ImportError, LookupError):
    """An optional package is not installed. An ImportError (``except ImportError`` catches it) and a
    LookupError (the CLI prints it as one line, no traceback)."""


def missing_extra_message(extra: str, module: str, feature: str | None = None) -> str:
    """The one-line message: what needs ``module``, and the ``pip install`` that brings it."""
    return f"{feature or EXTRAS.get(extra, extra)} needs the '{module}' package: pip install 'lstm-pipeline[{extra}]'"


def requires(extra: str, module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"onnx"``, ``"matplotlib.pyplot"``) and return it; raises
    :class:`MissingExtraError` naming ``extra`` when it (or a package it needs) is not installed.
    ``feature`` names what needs it (default: the extra's use in :data:`EXTRAS`)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module  # the module itself, or a package it imports: the extra brings both
        raise MissingExtraError(missing_extra_message(extra, missing, feature), name=missing) from None
