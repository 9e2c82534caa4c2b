"""Refuse broken models and write only valid JSON.

* :func:`check_finite`: a model whose weights hold NaN or infinity (a diverged run) is never
  exported, and never used when loaded.
* :func:`check_loaded_model`: what :func:`lstm_pipeline.artifacts.model_dir.load_pretrained` runs on every model it
  loads: finite weights, and a tokenizer of the size the model was built for (a ``tokenizer.json``
  swapped for another one would map ids to the wrong tokens without any error).
* :func:`json_safe`: NaN and infinity are not JSON (``json.dumps`` writes a bare ``NaN`` that
  other readers reject): they are written as ``null``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch


class ModelIntegrityError(ValueError):
    """A model's weights or tokenizer cannot be trusted."""


def first_non_finite(model: torch.nn.Module) -> tuple[str, int] | None:
    """(parameter or buffer name, number of non-finite values) of the first one holding NaN/inf, else None."""
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                return name, bad
    return None


def check_finite(model: torch.nn.Module, what: str) -> None:
    """Raise :class:`ModelIntegrityError` naming the first weight tensor with NaN/inf values."""
    found = first_non_finite(model)
    if found:
        name, bad = found
        raise ModelIntegrityError(f"{what}: the weights are not finite ({bad} NaN/inf values in {name}): the training "
                                  f"diverged. Retrain with a lower optim.lr or gradient clipping "
                                  f"(trainer.gradient_clip_val=0.25).")


def check_loaded_model(model: torch.nn.Module, tokenizer: Any, path: str | Path, action: str = "load") -> None:
    """Refuse a loaded model whose weights are not finite, or whose tokenizer's vocabulary size is not
    the model's (``vocab_size`` of config.json and of the output layer). ``action`` names what is refused
    in the message (``load``, ``push``). Raises :class:`ModelIntegrityError`."""
    check_finite(model, f"refused to {action} {path}")
    model_vocab = getattr(model, "vocab_size", None)
    tok_vocab = getattr(tokenizer, "vocab_size", None)
    if model_vocab is not None and tok_vocab is not None and int(model_vocab) != int(tok_vocab):
        raise ModelIntegrityError(
            f"refused to {action} {path}: its tokenizer.json has {tok_vocab} tokens but the model was trained with "
            f"{model_vocab}; the tokenizer is not the model's own. Use the tokenizer.json exported with the model.")


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (also in nested dicts/lists/tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
