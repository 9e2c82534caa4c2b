"""The exported model directory: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``.

Writing is atomic (a temporary sibling directory renamed into place); loading reads JSON and
safetensors only, so opening a shared model never runs code.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_model, save_model

from .models.lm import RecurrentLM
from .tokenization.base import TextTokenizer

FORMAT_VERSION = 1
MODEL_DIRNAME = "model"


class ModelDirError(FileNotFoundError):
    pass


def save_pretrained(model: RecurrentLM, model_cfg: Mapping[str, Any], tokenizer: TextTokenizer,
                    out_dir: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        config = {
            "format": "lstm-pipeline",
            "format_version": FORMAT_VERSION,
            "architecture": "RecurrentLM",
            "vocab_size": model.vocab_size,
            "model": dict(model_cfg),
            **(dict(extra) if extra else {}),
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
        tokenizer.save(tmp / "tokenizer.json")
        # swap into place: the old directory (if any) is removed only after the new one is complete
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a run directory (``<run>/model``) or a model directory itself."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelDirError(f"{path} does not exist. Pass run=<a run directory written by 'lstm-pipeline train'>.")
    for candidate in (path, path / MODEL_DIRNAME):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise ModelDirError(
        f"{path} holds no exported model (looked for config.json and model.safetensors in {path} and "
        f"{path / MODEL_DIRNAME}). A run exports its model when training finishes; resume an unfinished "
        f"run with 'lstm-pipeline train ckpt_path={path}'."
    )


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[RecurrentLM, TextTokenizer, dict]:
    model_dir = resolve_model_dir(path)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("format") != "lstm-pipeline":
        raise ModelDirError(f"{model_dir / 'config.json'} is not an lstm-pipeline model config.")
    model = RecurrentLM(config["vocab_size"], **config["model"])
    load_model(model, str(model_dir / "model.safetensors"), device=str(map_location))
    model.eval()
    tokenizer = TextTokenizer.load(model_dir / "tokenizer.json")
    return model, tokenizer, config
