"""Products of one-token steps: cached weight layouts (:func:`step_weight`) and the CPU product
every cell's ``step`` runs through (:func:`step_linear`), with the dynamic int8 path of
:mod:`lstm_pipeline.kernels.int8`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import onednn
from .int8 import _INT8, _int8_product


class _StepCache(dict):
    """The step layouts of one module. Copies and pickles of the module start empty (the layouts
    are rebuilt on the next step): oneDNN's reordered weights have no storage to copy or save."""

    def __deepcopy__(self, memo):
        return _StepCache()

    def __reduce__(self):
        return (_StepCache, ())


def step_weight(owner: nn.Module, name: str, make, *sources: Tensor, tag=None) -> Tensor:
    """``make(*sources)``, cached on ``owner`` while the ``sources`` are unchanged: the weight layouts
    one-token steps read (a concatenation, a summed bias, a blocked copy) are built once per weight
    version, not once per token. The value is rebuilt when a source changes (in-place update,
    load_state_dict, a new tensor). The entry holds its sources, so that no other tensor can take
    their address while it lives (sources may themselves be cached values, rebuilt and freed). With
    gradients enabled nothing is cached. ``tag`` is part of the key (e.g. the batch size a layout is
    tuned for): one entry per ``name``, rebuilt when the tag changes."""
    if torch.is_grad_enabled():
        return make(*sources)
    # cached values made under inference_mode are inference tensors: no version counter, never changed
    key = (tag, *((t.data_ptr(), 0 if t.is_inference() else t._version) for t in sources))
    cache = owner.__dict__.get("_step_weight_cache")
    if cache is None:
        cache = owner.__dict__["_step_weight_cache"] = _StepCache()
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = make(*sources).detach().contiguous()
    cache[name] = (key, value, sources)
    return value


def _column_blocks(weight: Tensor, blocks: int) -> Tensor:
    """(out, in) -> (blocks, in, ceil(out / blocks)): each block a contiguous (in, out) slab."""
    out, inp = weight.shape
    cols = -(-out // blocks)
    padded = torch.nn.functional.pad(weight, (0, 0, 0, blocks * cols - out))
    return padded.t().reshape(inp, blocks, cols).permute(1, 0, 2)


def step_linear(owner: nn.Module, name: str, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` for one-token steps (``weight`` (out, in) as PyTorch stores it).

    A step is bound by reading the weights, and on the CPU the plain BLAS call leaves half the
    machine idle (measured on 2 cores, a 10k x 512 head, weights streamed from memory):
    * batch 1: ``addmm`` runs the matrix-vector product on one thread (1.5 ms); the weight is kept as
      one contiguous (in, out) slab per thread (a cached copy) and ``baddbmm`` gives each thread its
      slab (0.9 ms);
    * batch > 1: oneDNN's matmul (``mkldnn._linear_pointwise``, the kernel ``torch.compile`` uses)
      on a weight that oneDNN has reordered for the batch size (cached per power of two): 2-3x
      faster than MKL's ``addmm`` at batch 4-64 (the head at batch 64: 8.8 -> 3.8 ms).
    Elsewhere (GPU, other dtypes, autograd, tracing for export, a build without oneDNN) it is ``F.linear``."""
    if owner.__dict__.get(_INT8) and not torch.is_grad_enabled():
        return _int8_product(owner, name, x, weight, bias)
    cpu_fast = (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
                and not torch.is_grad_enabled() and x.dim() == 2
                and not torch.jit.is_tracing())  # an export must record F.linear: any batch size, ONNX ops
    if not cpu_fast:
        return torch.nn.functional.linear(x, weight, bias)
    out = weight.size(0)
    if x.size(0) == 1:
        blocks = max(1, min(torch.get_num_threads(), out // 256))
        w = step_weight(owner, f"{name}/blocks{blocks}", lambda w: _column_blocks(w, blocks), weight)
        if bias is None:
            y = torch.bmm(x.expand(blocks, 1, -1), w)
        else:
            b = step_weight(owner, f"{name}/bias{blocks}",
                            lambda b: torch.nn.functional.pad(b, (0, w.size(0) * w.size(2) - out)).view(blocks, 1, -1), bias)
            y = torch.baddbmm(b, x.expand(blocks, 1, -1), w)
        return y.view(1, -1)[:, :out]  # (blocks, 1, cols) is (1, blocks * cols) in memory
    if onednn.available():
        bucket = 1 << (x.size(0) - 1).bit_length()  # reordered per power of two: few rebuilds when batches vary
        packed = step_weight(owner, f"{name}/onednn", lambda w: onednn.reorder(w, bucket), weight, tag=bucket)
        return onednn.matmul(x, packed, bias)
    return torch.nn.functional.linear(x, weight, bias)
