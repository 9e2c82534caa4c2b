"""Deployment export: a *step module* with the recurrent state as explicit inputs and outputs,

    (token (B,) int64, state_0, ..., state_{n-1}) -> (logits (B, V), new_state_0, ..., new_state_{n-1})

so that a runtime with no Python training stack steps token by token and keeps the state itself.
Formats: TorchScript (``torch.jit.trace``; load with ``torch.jit.load``) and ONNX (run it in
``onnxruntime``). ``quantize=True`` makes the matrix products dynamic int8 for CPU inference
(PyTorch dynamic quantisation for TorchScript, ONNX Runtime's ``quantize_dynamic`` for ONNX).

For the built-in LSTM and GRU the step runs the cell's weights as plain ``nn.Linear`` layers (one
input and one recurrent product per layer, the biases folded), which is what quantisation acts on;
any other (plugin) cell is exported through its own ``step``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .cells.fused import GRU, LSTM
from .cells.gru_cell import GRUCell
from .cells.lstm_cell import LSTMCell
from .models.lm import RecurrentLM

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


class _LSTMStep(nn.Module):
    def __init__(self, cell: LSTM):
        super().__init__()
        rnn = cell.rnn
        self.ih, self.hh, self.proj = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for layer in range(cell.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
            ih = nn.Linear(w_ih.size(1), w_ih.size(0))
            hh = nn.Linear(w_hh.size(1), w_hh.size(0), bias=False)
            with torch.no_grad():
                ih.weight.copy_(w_ih)
                ih.bias.copy_(getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}"))
                hh.weight.copy_(w_hh)
            self.ih.append(ih)
            self.hh.append(hh)
            if cell.proj_size:
                w_hr = getattr(rnn, f"weight_hr_l{layer}")
                proj = nn.Linear(w_hr.size(1), w_hr.size(0), bias=False)
                with torch.no_grad():
                    proj.weight.copy_(w_hr)
                self.proj.append(proj)

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        hs, cs = [], []
        inp = x  # (B, E)
        for layer, (ih, hh) in enumerate(zip(self.ih, self.hh)):
            h, c = LSTMCell.pointwise(ih(inp), hh(h0[layer]), [h0[layer], c0[layer]], [])  # the gate math
            if len(self.proj):
                h = self.proj[layer](h)
            hs.append(h)
            cs.append(c)
            inp = h
        return inp, torch.stack(hs), torch.stack(cs)  # (B, P|H), (L, B, P|H), (L, B, H)


class _GRUStep(nn.Module):
    def __init__(self, cell: GRU):
        super().__init__()
        rnn = cell.rnn
        self.ih, self.hh = nn.ModuleList(), nn.ModuleList()
        for layer in range(cell.num_layers):
            for kind, store in (("ih", self.ih), ("hh", self.hh)):
                w = getattr(rnn, f"weight_{kind}_l{layer}")
                lin = nn.Linear(w.size(1), w.size(0))
                with torch.no_grad():
                    lin.weight.copy_(w)
                    lin.bias.copy_(getattr(rnn, f"bias_{kind}_l{layer}"))
                store.append(lin)

    def forward(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        hs = []
        inp = x  # (B, E)
        for layer, (ih, hh) in enumerate(zip(self.ih, self.hh)):
            (h,) = GRUCell.pointwise(ih(inp), hh(h0[layer]), [h0[layer]], [])  # the gate math
            hs.append(h)
            inp = h
        return inp, torch.stack(hs)  # (B, H), (L, B, H)


class _GenericStep(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, *state: Tensor):
        y, new = self.cell.step(x, tuple(state))
        return (y, *new)


class StepModule(nn.Module):
    """One decoding step of a RecurrentLM with explicit state: (token (B,), *state) -> (logits (B, V), *state)."""

    def __init__(self, model: RecurrentLM):
        super().__init__()
        self.embedding, self.head = model.embedding, model.head
        cell = model.cell
        if type(cell) is LSTM:
            self.core: nn.Module = _LSTMStep(cell)
        elif type(cell) is GRU:
            self.core = _GRUStep(cell)
        else:
            self.core = _GenericStep(cell)
        self.num_state = len(model.init_state(1))
        self.eval().requires_grad_(False)

    def forward(self, token: Tensor, *state: Tensor):
        x = self.embedding(token)  # (B, E)
        y, *new_state = self.core(x, *state)
        return (self.head(y), *new_state)  # (B, V), state tensors


def quantize_dynamic_int8(module: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of every nn.Linear (weights int8, activations quantised per call)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)


def state_names(n: int) -> tuple[list[str], list[str]]:
    return [f"state_{i}" for i in range(n)], [f"new_state_{i}" for i in range(n)]


def export_step(model: RecurrentLM, out_path: str | Path, fmt: str = "onnx", quantize: bool = False,
                batch_size: int = 1) -> Path:
    """Write the step module of ``model`` to ``out_path`` in ``fmt`` (``torchscript`` or ``onnx``)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    step = StepModule(model.cpu().eval())
    token = torch.zeros(batch_size, dtype=torch.long)
    state = tuple(model.init_state(batch_size))
    ins, outs = state_names(len(state))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            module = quantize_dynamic_int8(step) if quantize else step
            traced = torch.jit.trace(module, (token, *state), check_trace=False)
            tmp = out_path.with_name(out_path.name + ".tmp")
            torch.jit.save(traced, str(tmp))
            tmp.replace(out_path)
        else:
            target = out_path.with_name(out_path.stem + ".fp32.onnx") if quantize else out_path
            batch = {0: "batch"}
            dynamic = {"token": batch, "logits": batch, **{n: {1: "batch"} for n in ins + outs}}
            torch.onnx.export(step, (token, *state), str(target), input_names=["token", *ins],
                              output_names=["logits", *outs], dynamic_axes=dynamic, dynamo=False,
                              opset_version=17, do_constant_folding=True)
            if quantize:
                import logging

                from onnxruntime.quantization import QuantType, quantize_dynamic

                root = logging.getLogger()
                level = root.level
                root.setLevel(max(level, logging.ERROR))  # quiet its "pre-process" advice, for this call only
                try:
                    quantize_dynamic(str(target), str(out_path), weight_type=QuantType.QInt8)
                finally:
                    root.setLevel(level)
                target.unlink()
    return out_path


def export_cmd(cfg) -> Path:
    """``lstm-pipeline export run=... format=onnx|torchscript [quantize=true] [out=...]``."""
    from .hub import load_pretrained, resolve_model_dir

    fmt = str(cfg.format)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
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
            "tokenizer": __import__("os").path.relpath(model_dir / "tokenizer.json", out.parent)}  # relative to this file
    (out.parent / (out.name + ".json")).write_text(json.dumps(meta, indent=2))
    print(f"Exported {fmt}{' (int8)' if cfg.quantize else ''} step module: {out}\n"
          f"  inputs:  token (B,) int64, {', '.join(f'{n} {s}' for n, s in zip(ins, shapes))} (zeros to start)\n"
          f"  outputs: logits (B, {model.vocab_size}), {', '.join(outs)}")
    return out
