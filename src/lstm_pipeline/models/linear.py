"""The output layer's matrix products on oneDNN for CPU training.

At word level the output layer is most of a training step (a 650 x 13,777 tied head: 57% of the
FLOPs). On the CPU, PyTorch runs ``F.linear`` and its two backward products on MKL; oneDNN's matmul
(``mkldnn._linear_pointwise``, the kernel ``torch.compile`` uses for linear layers) does the same
products faster on this machine (2 cores, 700 tokens x 650 x 13,777, best of 5, interleaved):

=====================  ======  ======
product                MKL     oneDNN
=====================  ======  ======
logits = h W^T + b     142 ms   82 ms
grad_h = G W            82 ms   78 ms
grad_W = G^T h         129 ms  108 ms
=====================  ======  ======

:func:`linear` is ``F.linear`` with those three products on oneDNN. It is used where they run on
oneDNN unchanged: CPU, float32, no autocast. Everywhere else (GPU, bf16, a build without oneDNN) it is
``F.linear`` itself. The results equal ``F.linear``'s to float32 rounding (tested).
"""
from __future__ import annotations

import torch
from torch import Tensor

_lp = getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def _onednn(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return _lp(x, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # x (N, in), weight (out, in)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad (N, out)
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = _onednn(grad, weight.t(), None) if ctx.needs_input_grad[0] else None  # (N, in) = G W
        gw = _onednn(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None  # (out, in) = G^T x
        gb = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def onednn_applies(x: Tensor, weight: Tensor) -> bool:
    return (_lp is not None and torch.backends.mkldnn.is_available() and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu"))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``; its forward and backward products on oneDNN where that applies."""
    if not onednn_applies(x, weight):
        return torch.nn.functional.linear(x, weight, bias)
    lead = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.size(-1)), weight, bias)
    return y.view(*lead, weight.size(0))
