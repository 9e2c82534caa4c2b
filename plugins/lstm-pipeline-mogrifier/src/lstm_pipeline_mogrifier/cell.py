"""The Mogrifier LSTM (Melis, Kočiský and Blunsom, "Mogrifier LSTM", ICLR 2020).

Before the usual LSTM update, the input ``x`` and the previous hidden state ``h`` gate each other
for ``rounds`` rounds (starting from x^{-1} = x, h^0 = h_prev)::

    round i odd:   x^i = 2 * sigmoid(Q^i h^{i-1}) * x^{i-2}
    round i even:  h^i = 2 * sigmoid(R^i x^{i-1}) * h^{i-2}

and the LSTM update then uses the last x and h. ``Q^i`` maps the hidden width to the input
width and ``R^i`` the input width to the hidden width; with ``rank > 0`` each is factored as a
product of two thin matrices (the paper's low-rank variant). ``rounds = 0`` is a plain LSTM.

Cost: the mogrified input depends on h_{t-1}, so unlike a plain LSTM the input projection
``W x`` cannot be computed for the whole window in one matrix product; it is hoisted out of the
time loop only when ``rounds == 0``. Each step does the ``rounds`` small gate products and one
fused matrix product of ``[x; h]`` with ``[W; U]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstm_pipeline.cells.base import RecurrentCell, State


class _Gate(nn.Module):
    """``2 * sigmoid(M v)`` with M (out, in), full or factored as (out, k) @ (k, in)."""

    def __init__(self, in_size: int, out_size: int, rank: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_size)
        if rank > 0:
            self.left = nn.Parameter(torch.empty(out_size, rank).uniform_(-bound, bound))
            self.right = nn.Parameter(torch.empty(rank, in_size).uniform_(-1.0 / math.sqrt(rank), 1.0 / math.sqrt(rank)))
        else:
            self.weight = nn.Parameter(torch.empty(out_size, in_size).uniform_(-bound, bound))
        self.rank = rank

    def forward(self, v: Tensor) -> Tensor:  # v (B, in) -> (B, out)
        z = F.linear(F.linear(v, self.right), self.left) if self.rank > 0 else F.linear(v, self.weight)
        return 2.0 * torch.sigmoid(z)


class _MogrifierLayer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, rounds: int, rank: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.rounds = rounds
        bound = 1.0 / math.sqrt(hidden_size)
        # [W | U]: one matrix product on [x; h] per step. Gate order i, f, g, o as in nn.LSTM.
        self.weight = nn.Parameter(torch.empty(4 * hidden_size, input_size + hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-bound, bound))
        # odd rounds gate x from h (Q), even rounds gate h from x (R)
        self.q = nn.ModuleList(_Gate(hidden_size, input_size, rank) for _ in range((rounds + 1) // 2))
        self.r = nn.ModuleList(_Gate(input_size, hidden_size, rank) for _ in range(rounds // 2))
        self.input_size = input_size

    def mogrify(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, E), h (B, H) -> the mogrified (x, h)."""
        for i in range(1, self.rounds + 1):
            if i % 2:
                x = self.q[i // 2](h) * x
            else:
                h = self.r[i // 2 - 1](x) * h
        return x, h

    def cell(self, gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = gates.chunk(4, dim=1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, E), h/c (B, H) -> new h, c."""
        x, hm = self.mogrify(x, h)
        gates = torch.addmm(self.bias, torch.cat([x, hm], 1), self.weight.t())  # (B, 4H)
        return self.cell(gates, c)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, E) -> y (B, T, H), last h, c."""
        ys = []
        if self.rounds == 0:
            w_x, w_h = self.weight.split([self.input_size, self.hidden_size], dim=1)
            pre = F.linear(x, w_x, self.bias)  # (B, T, 4H): the input projection, hoisted
            for t in range(x.size(1)):
                h, c = self.cell(torch.addmm(pre[:, t], h, w_h.t()), c)
                ys.append(h)
        else:
            for t in range(x.size(1)):
                h, c = self.step(x[:, t], h, c)
                ys.append(h)
        return torch.stack(ys, 1), h, c


class MogrifierLSTM(RecurrentCell):
    """Multi-layer Mogrifier LSTM; dropout between layers in training mode."""

    lstm_pipeline_api = "1"
    state_batch_dims = (1, 1)  # h (L, B, H), c (L, B, H)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 rounds: int = 5, rank: int = 0):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        if rounds < 0:
            raise ValueError(f"model.cell.rounds must be >= 0 (0 is a plain LSTM), got {rounds}")
        if rank < 0:
            raise ValueError(f"model.cell.rank must be >= 0 (0 = full-rank Q and R), got {rank}")
        self.rounds = rounds  # mutual gating rounds before each LSTM update
        self.rank = rank      # 0: full-rank Q^i, R^i; k > 0: each factored through k dimensions
        self.layers = nn.ModuleList(
            _MogrifierLayer(input_size if l == 0 else hidden_size, hidden_size, rounds, rank) for l in range(num_layers))
        self.drop = nn.Dropout(dropout)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        z = torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype)
        return (z, z.clone())

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        h0, c0 = state  # (L, B, H) each
        hs, cs = [], []
        y = x  # (B, T, E)
        for l, layer in enumerate(self.layers):
            if l > 0:
                y = self.drop(y)
            y, h, c = layer(y, h0[l], c0[l])  # (B, T, H)
            hs.append(h)
            cs.append(c)
        return y, (torch.stack(hs), torch.stack(cs))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h0, c0 = state
        hs, cs = [], []
        y = x  # (B, E)
        for l, layer in enumerate(self.layers):
            if l > 0:
                y = self.drop(y)
            h, c = layer.step(y, h0[l], c0[l])
            hs.append(h)
            cs.append(c)
            y = h
        return y, (torch.stack(hs), torch.stack(cs))
