"""Dynamic int8 for one-token steps on the CPU: the products that :func:`lstm_pipeline.kernels.step.step_linear`
runs become int8 products (weights per output row, activations per call; PyTorch's
``torch.ao.nn.quantized.dynamic``). Training and ``forward`` stay float.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

#: attribute set on a module (by :func:`quantize_int8_`) whose one-token products run in dynamic int8
_INT8 = "_int8_step"


def quantize_int8_(model: nn.Module) -> nn.Module:
    """Make every product that a one-token ``step`` runs through :func:`step_linear` (the cells'
    gate products, a tying projection, the output layer) a dynamic int8 product, in place; returns
    ``model``. Weights are quantised per output row (symmetric, int8) the first time a step uses
    them, activations per call (PyTorch's dynamic quantisation, ``torch.ao.nn.quantized.dynamic``,
    fbgemm/x86 on the CPU). Training and ``forward`` are unchanged (float): this is for generation
    and export of the step on the CPU. The quantised copies are made once: quantise after training.
    Any cell whose ``step`` uses ``step_linear`` is quantised this way; other products stay float."""
    for m in model.modules():
        m.__dict__[_INT8] = True
    return model


def _int8_product(owner: nn.Module, name: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if x.device.type != "cpu":
        raise ValueError("int8 steps run on the CPU only (dynamic quantisation); load the model on device=cpu.")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    key = "int8_" + name.replace("/", "_").replace(".", "_")
    mod = owner._modules.get(key)
    if mod is None:  # first use: quantise this weight (a registered child, so that tracing records it)
        import warnings

        with warnings.catch_warnings():  # torch 2.13 marks torch.ao's quantised tensors deprecated (torchao is next)
            warnings.simplefilter("ignore")
            obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
            w = weight.detach().float().contiguous()
            obs(w)
            scales, zero_points = obs.calculate_qparams()
            qweight = torch.quantize_per_channel(w, scales.double(), zero_points.long(), 0, torch.qint8)
            mod = DynamicLinear(w.size(1), w.size(0), bias_=bias is not None, dtype=torch.qint8)
            mod.set_weight_bias(qweight, None if bias is None else bias.detach().float())
        owner.add_module(key, mod)
    return mod(x.float())


QUANTIZE = (None, "none", "int8")


def quantize_model(model: nn.Module, quantize: str | None) -> nn.Module:
    """``quantize``: None/"none" (float, unchanged) or "int8" (in place: the products every ``step`` runs
    through ``step_linear``, the cells' gates, a tying projection and the output layer, become dynamic
    int8, weights per output row; the same rewrite export's ``quantize=true`` uses). The prompt
    (``prefill``) stays float. CPU only."""
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of none, int8; got {quantize!r}")
    if quantize != "int8":
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("quantize=int8 runs on the CPU only (dynamic quantisation): use device=cpu.")
    return quantize_int8_(model)


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose one-token steps run their products in dynamic int8 (weights per
    output row, activations per call), quantised now (one warm-up step)."""
    q = quantize_int8_(copy.deepcopy(model).cpu().eval())
    with torch.no_grad():
        q.step(torch.zeros(1, dtype=torch.long), q.init_state(1))  # builds the int8 weights before tracing
    return q
