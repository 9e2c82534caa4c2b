"""The dropouts of the model (AWD-LSTM's among them, Merity et al. 2017), each active only in training.

* :func:`dropout` / :class:`Dropout`: plain dropout, a fresh mask per element. On the CPU the mask is
  drawn as ``rand < 1 - p`` rather than with ``bernoulli_``, which is 2-3x slower there (700 x 650
  floats: ``F.dropout`` 8.3 ms, this 3 ms); the distribution is the same, the random stream is not.
* :class:`LockedDropout`: one mask per sequence, shared by every time step (variational dropout);
  ``locked=False`` makes it plain dropout.
* :func:`embedding_dropout`: drops whole rows of the embedding matrix (every occurrence of a word).
* :func:`drop_hidden_weights`: DropConnect on the hidden-to-hidden matrices of a cell, returned as
  a parameter dict for ``torch.func.functional_call``, so the fused kernel runs on dropped weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), not {p}")
    return p


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``: zero each element with probability ``p``, scale the rest by
    ``1/(1-p)``. On the CPU (float32/float64) the mask comes from ``torch.rand``; elsewhere it is
    ``F.dropout`` itself."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return F.dropout(x, p, True)
    keep = 1.0 - _check(p)
    mask = torch.rand_like(x).lt_(keep).mul_(1.0 / keep)  # 1/keep where kept, 0 where dropped
    return x * mask


class Dropout(nn.Module):
    """``nn.Dropout`` through :func:`dropout`."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = _check(p)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LockedDropout(nn.Module):
    """x (B, T, H): a (B, 1, H) Bernoulli mask scaled by 1/(1-p), the same at every step;
    ``locked=False``: plain dropout (a fresh mask for every element)."""

    def __init__(self, p: float = 0.0, locked: bool = True):
        super().__init__()
        self.p, self.locked = _check(p), locked

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if not self.locked:
            return dropout(x, self.p)
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1.0 - self.p).div_(1.0 - self.p)  # (B, 1, H)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}" + ("" if self.locked else ", locked=False")


def embedding_dropout(embed: nn.Embedding, tokens: Tensor, p: float, training: bool) -> Tensor:
    """tokens (B, T) -> (B, T, E) with rows of ``embed.weight`` dropped (prob ``p``) in training."""
    weight = embed.weight  # (V, E)
    if training and p > 0.0:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1.0 - p).div_(1.0 - p)  # (V, 1)
        weight = weight * mask
    return F.embedding(tokens, weight, embed.padding_idx, embed.max_norm, embed.norm_type,
                       embed.scale_grad_by_freq, embed.sparse)


def hidden_weight_names(cell: nn.Module) -> list[str]:
    """The cell's hidden-to-hidden weight matrices: parameters named ``weight_hh*`` (the naming of
    ``nn.LSTM`` / ``nn.GRU`` and of the reference cells)."""
    return [n for n, _ in cell.named_parameters() if n.rsplit(".", 1)[-1].startswith("weight_hh")]


def drop_hidden_weights(cell: nn.Module, names: list[str], p: float) -> dict[str, Tensor]:
    """DropConnect: {name: dropout(W_hh, p)} for ``functional_call(cell, ...)``."""
    params = dict(cell.named_parameters())
    return {n: dropout(params[n], p) for n in names}
