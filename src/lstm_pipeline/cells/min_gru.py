"""``min_gru``: the minimal GRU (Feng et al., 2024, "Were RNNs All We Needed?").

The gates do not look at h_{t-1}, so the recurrence is linear in h and a whole window is computed
at once with a parallel scan (training), while generation steps it one token at a time:

    z_t = sigmoid(W_z x_t + b_z)
    h~_t = g(W_h x_t + b_h)            g(a) = a + 0.5 if a >= 0 else sigmoid(a)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t            (= a_t * h_{t-1} + b_t)

The scan (Hillis-Steele) composes the affine maps h -> a h + b pairwise in log2(T) rounds:
after the round with offset d, (a_t, b_t) describes steps t-2d+1 .. t at once. It only multiplies
and adds (no division by running products, no logs), so it is as stable as the sequential loop.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .custom import CustomCell


def _g(a: Tensor) -> Tensor:
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """All h_t of h_t = a_t * h_{t-1} + b_t: a, b (B, T, H), h0 (B, H) -> (B, T, H)."""
    d, steps = 1, a.size(1)
    while d < steps:
        # compose step t with the block that ends at t - d
        b = torch.cat([b[:, :d], torch.addcmul(b[:, d:], a[:, d:], b[:, :-d])], 1)
        a = torch.cat([a[:, :d], a[:, d:] * a[:, :-d]], 1)
        d *= 2
    return torch.addcmul(b, a, h0.unsqueeze(1))


class MinGRU(CustomCell):
    """Minimal GRU, parallel over time (state: h (L, B, H))."""

    num_gates = 2  # z, h~
    state_size = 1
    recurrent = False  # no W_hh: the gates see only x_t

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        """The sequential update (generation): xg (B, 2H) -> [h_t]; hg is unused."""
        k, a = xg.chunk(2, 1)
        z = torch.sigmoid(k)
        return [(1.0 - z) * state[0] + z * _g(a)]

    def run_layer(self, k: int, x: Tensor, state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
        gate, cand = self.input_projection(k, x).chunk(2, -1)  # (B, T, H) each, one GEMM for the window
        z = torch.sigmoid(gate)
        h = linear_scan(1.0 - z, z * _g(cand), state[0])  # (B, T, H)
        return h, [h[:, -1]]
