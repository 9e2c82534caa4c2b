"""oneDNN's matmul, the one way the package reaches it (generation steps and the output layer).

On the CPU, oneDNN's matmul (``mkldnn._linear_pointwise``, the kernel ``torch.compile`` uses for
linear layers) is faster than the MKL calls behind ``F.linear`` on the machines measured here; see
``cells/base.py: step_linear`` and ``models/linear.py`` for the figures. Both ops are internal to
PyTorch, so callers check :func:`available` and fall back to ``F.linear``.
"""
from __future__ import annotations

import torch
from torch import Tensor

_matmul = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
_reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)


def available() -> bool:
    """Whether this torch build has oneDNN and both ops."""
    return _matmul is not None and _reorder is not None and torch.backends.mkldnn.is_available()


def matmul(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` on oneDNN: x (N, in), weight (out, in) dense or from :func:`reorder`."""
    return _matmul(x, weight, bias, "none", [], "")


def reorder(weight: Tensor, batch: int) -> Tensor:
    """``weight`` (out, in) in oneDNN's own layout for ``batch`` rows (an opaque tensor that only
    :func:`matmul` reads)."""
    return _reorder(weight, batch)
