"""``min_gru``: the minimal GRU (Feng et al., 2024, "Were RNNs All We Needed?").

The gates do not look at h_{t-1}, so the recurrence is linear in h and a whole window is computed
at once with a parallel scan (training), while generation steps it one token at a time:

    z_t = sigmoid(W_z x_t + b_z)
    h~_t = g(W_h x_t + b_h)            g(a) = a + 0.5 if a >= 0 else sigmoid(a)  (always > 0)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Parallel form: with A_t = prod_{s<=t} (1 - z_s), h_t = A_t * (h_0 + sum_{s<=t} z_s h~_s / A_s),
evaluated in log space (``logcumsumexp``) so that long windows neither underflow nor overflow.
Every h_t is positive, which is what makes the log-space scan exact.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import State
from .custom import CustomCell


def _g(a: Tensor) -> Tensor:
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def _log_g(a: Tensor) -> Tensor:
    return torch.where(a >= 0, torch.log(F.relu(a) + 0.5), -F.softplus(-a))


class MinGRU(CustomCell):
    """Minimal GRU, parallel over time (state: h (L, B, H), all entries positive)."""

    num_gates = 2  # z, h~
    state_size = 1
    recurrent = False  # no W_hh: the gates see only x_t
    #: time steps scanned in parallel at once (longer windows are chained chunk by chunk)
    scan_chunk = 128

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        """The sequential update (generation): xg (B, 2H) -> [h_t]; hg is unused."""
        k, a = xg.chunk(2, 1)
        z = torch.sigmoid(k)
        return [(1.0 - z) * state[0] + z * _g(a)]

    def run_layer(self, k: int, x: Tensor, state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
        w_ih, b_ih, _, _, _ = self.layer_params(k)
        gate, cand = F.linear(x, w_ih, b_ih).chunk(2, -1)  # (B, T, H) each, one GEMM for the window
        log_keep = -F.softplus(gate)   # log(1 - z_t)
        log_in = -F.softplus(-gate) + _log_g(cand)  # log(z_t * h~_t)
        h = state[0]  # (B, H)
        outs = []
        # the scan is parallel within chunks of scan_chunk steps; chaining chunks keeps the
        # cumulative log-decay small enough for float32 on windows of any length
        for keep, inp in zip(log_keep.split(self.scan_chunk, 1), log_in.split(self.scan_chunk, 1)):
            log_h0 = torch.log(h.clamp_min(torch.finfo(h.dtype).tiny)).unsqueeze(1)  # (B, 1, H)
            a_star = F.pad(torch.cumsum(keep, 1), (0, 0, 1, 0))  # (B, t+1, H): log A_t, A_0 = 1
            log_terms = torch.cat([log_h0, inp], 1) - a_star  # (B, t+1, H)
            y = torch.exp(a_star + torch.logcumsumexp(log_terms, 1))[:, 1:]  # (B, t, H)
            outs.append(y)
            h = y[:, -1]
        return (outs[0] if len(outs) == 1 else torch.cat(outs, 1)), [h]

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One token, sequentially: x (B, E) -> y (B, H)."""
        self.check_state(state, x.size(0))
        (h0,) = state
        hs = []
        inp = x
        for k in range(self.num_layers):
            w_ih, b_ih, _, _, _ = self.layer_params(k)
            (h,) = self.step_fn(F.linear(inp, w_ih, b_ih), inp, [h0[k]], [])
            hs.append(h)
            inp = h  # dropout between layers is a training-time thing; step is for generation
        return inp, (torch.stack(hs),)
