"""The output layer's matrix products on oneDNN on the CPU (training and evaluation).

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

from . import onednn


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # x (N, in), weight (out, in)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn.matmul(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):  # grad (N, out)
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        gx = onednn.matmul(grad, weight.t(), None) if ctx.needs_input_grad[0] else None  # (N, in) = G W
        gw = onednn.matmul(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None  # (out, in) = G^T x
        gb = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def onednn_applies(x: Tensor, weight: Tensor) -> bool:
    return (onednn.available() and x.device.type == "cpu"
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu"))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``; its forward and backward products on oneDNN where that applies."""
    if not onednn_applies(x, weight):
        return torch.nn.functional.linear(x, weight, bias)
    lead = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.size(-1)), weight, bias)
    return y.view(*lead, weight.size(0))


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h W^T + b`` against ``target``, with the logits kept transposed.

    The logits are made as (V, N) = W h^T, so that the softmax gradient G^T comes out in the layout
    the weight gradient G^T h reads (no 38 MB transpose at word level), and the loss's gradient is
    formed in place in that buffer (no separate log-softmax output, no one-hot gradient tensor).
    700 tokens x 650 x 13,777, forward and backward: MKL ``F.linear`` + ``F.cross_entropy`` 406 ms,
    :func:`linear` + ``F.cross_entropy`` 349 ms, this 261 ms (best of 5, 2 cores)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, ignore_index: int):
        zt = onednn.matmul(weight, h, None)  # (V, N) logits, transposed
        if bias is not None:
            zt.add_(bias[:, None])
        cols = torch.arange(h.size(0), device=h.device)
        valid = target != ignore_index
        tgt = target.masked_fill(~valid, 0)
        z_target = zt[tgt, cols]  # (N,)
        zmax = zt.amax(0)  # (N,)
        correct = ((z_target >= zmax) & valid).sum()
        zt.sub_(zmax).exp_()
        total = zt.sum(0)  # (N,)
        nll = zmax + total.log() - z_target
        count = valid.sum()
        loss = nll.masked_fill(~valid, 0.0).sum() / count
        zt.mul_((valid / total)[None, :])  # softmax; ignored columns zero
        zt.index_put_((tgt[valid], cols[valid]), torch.tensor(-1.0, device=h.device), accumulate=True)
        ctx.save_for_backward(h, weight, zt, count)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(correct, count)
        return loss, correct, count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor, _correct, _count):
        h, weight, gt = ctx.saved_tensors[:3]
        scale = grad_loss / ctx.saved_tensors[3]
        gh = torch.mm(gt.t(), weight).mul_(scale) if ctx.needs_input_grad[0] else None  # (N, H)
        gw = onednn.matmul(gt, (h.t() * scale).contiguous(), None) if ctx.needs_input_grad[1] else None  # (V, H)
        gb = gt.sum(1).mul_(scale) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gh, gw, gb, None, None


def linear_cross_entropy(h: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                         ignore_index: int = -100) -> tuple[Tensor, Tensor, Tensor]:
    """Output layer and loss in one: h (N, H), weight (V, H), target (N,) ->
    (mean cross-entropy over the targets that are not ``ignore_index``, how many of those targets
    have the highest logit, how many there are). Equals ``F.cross_entropy(F.linear(h, weight, bias),
    target)`` and its gradients; on the CPU in float32 the products run on oneDNN with the logits
    transposed (:class:`_LinearCrossEntropy`), elsewhere it is those two calls."""
    if onednn_applies(h, weight) and h.dim() == 2:
        return _LinearCrossEntropy.apply(h, weight, bias, target, ignore_index)
    logits = torch.nn.functional.linear(h, weight, bias).float()
    loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=ignore_index)
    valid = target != ignore_index
    with torch.no_grad():
        correct = ((logits.argmax(-1) == target) & valid).sum()
    return loss, correct, valid.sum()
