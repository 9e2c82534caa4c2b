"""Deployment export: a *step module* with the recurrent state as explicit inputs and outputs,

    (token (B,) int64, state_0, ..., state_{n-1}) -> (logits (B, V), new_state_0, ..., new_state_{n-1})

so that a runtime with no Python training stack steps token by token and keeps the state itself.
Formats: TorchScript (``torch.jit.trace``; load with ``torch.jit.load``) and ONNX (run it in
``onnxruntime``). ``quantize=True`` makes the matrix products dynamic int8 for CPU inference
(:func:`lstm_pipeline.kernels.int8.quantize_int8_` on the model for TorchScript, ONNX Runtime's
``quantize_dynamic`` for ONNX).

The step module is the model's own ``RecurrentLM.step``, traced: every layout (fused or custom cells,
one cell per layer, a tying projection, ``proj_size``, one-hot input, plugin cells) exports through
the same code that generation runs, and nothing here knows how a cell is built.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..extras import requires
from ..kernels.int8 import quantize_dynamic_int8
from ..models.lm import RecurrentLM
from ..atomic import atomic_path, temporary_sibling

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


class StepModule(nn.Module):
    """One decoding step of a RecurrentLM with explicit state: (token (B,), *state) -> (logits (B, V), *state).
    It calls ``model.step``; it holds the model (no copies of its weights)."""

    def __init__(self, model: RecurrentLM):
        super().__init__()
        self.model = model
        self.num_state = len(model.init_state(1))
        self.eval().requires_grad_(False)

    def forward(self, token: Tensor, *state: Tensor):
        logits, new_state = self.model.step(token, tuple(state))
        return (logits, *new_state)  # (B, V), state tensors


def state_names(n: int) -> tuple[list[str], list[str]]:
    return [f"state_{i}" for i in range(n)], [f"new_state_{i}" for i in range(n)]


def _keep_state_inputs(path: Path, names: list[str], state: tuple[Tensor, ...]) -> None:
    """Put back the state inputs the ONNX exporter dropped because the step does not read them (a state
    tensor that only reports, such as the last output h of an mLSTM, which the next step overwrites): a
    runtime feeds every ``state_i`` it was given back as ``new_state_i``, as the export's description says."""
    import onnx

    model = onnx.load(str(path))
    have = {i.name for i in model.graph.input}
    missing = [i for i, n in enumerate(names) if n not in have]
    if not missing:
        return
    for i in missing:
        dims = ["batch" if d == 1 else size for d, size in enumerate(state[i].shape)]
        value = onnx.helper.make_tensor_value_info(names[i], onnx.TensorProto.FLOAT, dims)
        model.graph.input.insert(1 + i, value)  # after token, in state order (the ones before i are all there)
    onnx.save(model, str(path))


def _export_onnx(model: RecurrentLM, path: Path, token: Tensor, state: tuple[Tensor, ...]) -> None:
    """``torch.onnx.export`` of the step module to ``path`` (opset 17, dynamic batch), state inputs kept."""
    ins, outs = state_names(len(state))
    batch = {0: "batch"}
    dynamic = {"token": batch, "logits": batch, **{n: {1: "batch"} for n in ins + outs}}
    torch.onnx.export(StepModule(model), (token, *state), str(path), input_names=["token", *ins],
                      output_names=["logits", *outs], dynamic_axes=dynamic, dynamo=False,
                      opset_version=17, do_constant_folding=True)
    _keep_state_inputs(path, ins, state)


def _quantize_onnx(src: Path, dst: Path) -> None:
    """ONNX Runtime's ``quantize_dynamic`` (int8 weights) of ``src`` into ``dst``, its log advice quiet."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # quiet its "pre-process" advice, for this call only
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def export_step(model: RecurrentLM, out_path: str | Path, fmt: str = "onnx", quantize: bool = False,
                batch_size: int = 1) -> Path:
    """Write the step module of ``model`` to ``out_path`` in ``fmt`` (``torchscript`` or ``onnx``), atomically
    (:mod:`lstm_pipeline.atomic`: a failed or killed export leaves no partial file under ``out_path``). Raises
    ``ValueError`` for an unknown format, :class:`lstm_pipeline.atomic.StorageError` when the disk or a limit is full."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    for module in (("onnx",) + (("onnxruntime",) if quantize else ())) if fmt == "onnx" else ():
        requires("onnx", module, f"export format=onnx{' quantize=true' if quantize else ''}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    token = torch.zeros(batch_size, dtype=torch.long)
    state = tuple(model.init_state(batch_size))
    with warnings.catch_warnings(), torch.no_grad(), atomic_path(out_path) as tmp:
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            module = StepModule(quantize_dynamic_int8(model) if quantize else model)
            buffer = io.BytesIO()  # torch.jit.save to a path fails with a RuntimeError; a Python write with errno
            torch.jit.save(torch.jit.trace(module, (token, *state), check_trace=False), buffer)
            tmp.write_bytes(buffer.getbuffer())
        elif not quantize:
            _export_onnx(model, tmp, token, state)
        else:
            fp32 = temporary_sibling(out_path.with_name(out_path.stem + ".fp32.onnx"))
            try:
                _export_onnx(model, fp32, token, state)
                _quantize_onnx(fp32, tmp)
            finally:
                fp32.unlink(missing_ok=True)
    return out_path
