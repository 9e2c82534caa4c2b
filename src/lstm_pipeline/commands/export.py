"""``lstm-pipeline export run=... format=onnx|torchscript [quantize=true] [out=...]``: a run's model
as a TorchScript or ONNX step module (state in, state out)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import write_text
from ..artifacts.export import SUFFIX, export_step, state_names
from ..artifacts.model_dir import load_pretrained, resolve_model_dir


def run(cfg) -> Path:
    """Export ``cfg.run``'s model as a step module; writes it and a ``.json`` beside it; returns its path."""
    fmt = str(cfg.format)  # one of FORMATS (config.checks.check)
    model_dir = resolve_model_dir(cfg.run)
    model, tokenizer, config = load_pretrained(model_dir)
    name = "model.step" + (".int8" if cfg.quantize else "") + SUFFIX[fmt]
    out = Path(cfg.out) if cfg.out else (model_dir.parent if model_dir.name == "model" else model_dir) / "export" / name
    export_step(model, out, fmt, bool(cfg.quantize))
    shapes = [list(s.shape) for s in model.init_state(1)]
    ins, outs = state_names(len(shapes))
    meta = {"format": fmt, "quantized": bool(cfg.quantize), "file": out.name, "vocab_size": model.vocab_size,
            "inputs": {"token": "int64 (B,)", **{n: f"float32 {shape} with B at dim 1" for n, shape in zip(ins, shapes)}},
            "outputs": {"logits": "float32 (B, V)", **{n: f"float32, like {i}" for n, i in zip(outs, ins)}},
            "initial_state": "zeros", "bos_token_id": config.get("bos_token_id"),
            "tokenizer": os.path.relpath(model_dir / "tokenizer.json", out.parent)}  # relative to this file
    write_text(out.parent / (out.name + ".json"), json.dumps(meta, indent=2))
    print(f"Exported {fmt}{' (int8)' if cfg.quantize else ''} step module: {out}\n"
          f"  inputs:  token (B,) int64, {', '.join(f'{n} {s}' for n, s in zip(ins, shapes))} (zeros to start)\n"
          f"  outputs: logits (B, {model.vocab_size}), {', '.join(outs)}")
    return out
