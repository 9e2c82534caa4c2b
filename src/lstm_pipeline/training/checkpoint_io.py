"""Checkpoints written atomically: to a temporary file, fsynced, then renamed over the target.
An interrupted save leaves the previous checkpoint intact, never a truncated one. Checkpoints are
read with ``torch.load(weights_only=True)`` only (:func:`lstm_pipeline.training.safety.load_checkpoint`):
a file that would run code when unpickled is refused, whatever ``weights_only`` the caller asks for."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        from .safety import load_checkpoint

        return load_checkpoint(path, map_location="cpu" if map_location is None else map_location)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
