"""The AWD-LSTM dropouts (Merity et al. 2017), each active only in training mode.

* :class:`LockedDropout`: one mask per sequence, shared by every time step (variational dropout).
* :func:`embedding_dropout`: drops whole rows of the embedding matrix (every occurrence of a word).
* :func:`drop_hidden_weights`: DropConnect on the hidden-to-hidden matrices of a cell, returned as
  a parameter dict for ``torch.func.functional_call``, so the fused kernel runs on dropped weights.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LockedDropout(nn.Module):
    """x (B, T, H): a (B, 1, H) Bernoulli mask scaled by 1/(1-p), the same at every step."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), not {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1.0 - self.p).div_(1.0 - self.p)  # (B, 1, H)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


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
    """DropConnect: {name: F.dropout(W_hh, p)} for ``functional_call(cell, ...)``."""
    params = dict(cell.named_parameters())
    return {n: F.dropout(params[n], p, training=True) for n in names}
