"""The fused kernels: ``nn.LSTM`` / ``nn.GRU`` (oneDNN on CPU, cuDNN on GPU).

Training runs the fused kernel over whole windows. Generation steps one token at a time, and
``nn.LSTM`` with T=1 takes a slow path on the CPU, so ``step`` runs the same weights through plain
cell math (``step_linear`` products + elementwise), which is numerically the same function.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, step_linear, step_weight
from .gru_cell import GRUCell


def _ifog(t: Tensor) -> Tensor:
    """PyTorch's gate order (i, f, g, o) along dim 0 -> (i, f, o, g): the three sigmoid gates adjacent."""
    i, f, g, o = t.chunk(4, 0)
    return torch.cat([i, f, o, g], 0)


def _step_gate_weight(w_ih: Tensor, w_hh: Tensor) -> Tensor:
    return _ifog(torch.cat([w_ih, w_hh], 1))


def _step_gate_bias(b_ih: Tensor, b_hh: Tensor) -> Tensor:
    return _ifog(b_ih + b_hh)


class LSTM(RecurrentCell):
    """Multi-layer LSTM on the fused kernel; optional projection (``proj_size``)."""

    state_batch_dims = (1, 1)  # h (L, B, P), c (L, B, H)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 proj_size: int = 0):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        self.proj_size = proj_size
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0, proj_size=proj_size)

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        h = torch.zeros(self.num_layers, batch, self.output_size, device=device, dtype=dtype)
        c = torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype)
        return (h, c)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        y, (h, c) = self.rnn(x, tuple(state))  # y (B, T, P|H)
        return y, (h, c)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h0, c0 = state  # (L, B, P|H), (L, B, H)
        hs, cs = [], []
        inp = x  # (B, E)
        rnn = self.rnn
        for layer in range(self.num_layers):
            # one (4H, E|H + P|H) weight and the summed bias in (i, f, o, g) order, cached outside
            # autograd: one product per layer, one sigmoid over three gates
            w = step_weight(rnn, f"w{layer}", _step_gate_weight, getattr(rnn, f"weight_ih_l{layer}"),
                            getattr(rnn, f"weight_hh_l{layer}"))
            b = step_weight(rnn, f"b{layer}", _step_gate_bias, getattr(rnn, f"bias_ih_l{layer}"),
                            getattr(rnn, f"bias_hh_l{layer}"))
            gates = step_linear(rnn, f"w{layer}", torch.cat([inp, h0[layer]], 1), w, b)  # (B, 4H)
            H = self.hidden_size
            sig = torch.sigmoid(gates[:, : 3 * H])
            c = torch.addcmul(sig[:, H: 2 * H] * c0[layer], sig[:, :H], torch.tanh(gates[:, 3 * H:]))
            h = sig[:, 2 * H:] * torch.tanh(c)
            if self.proj_size:
                h = step_linear(rnn, f"hr{layer}", h, getattr(rnn, f"weight_hr_l{layer}"))
            hs.append(h)
            cs.append(c)
            inp = h
        return inp, (torch.stack(hs), torch.stack(cs))


class GRU(RecurrentCell):
    """Multi-layer GRU on the fused kernel."""

    state_batch_dims = (1,)  # h (L, B, H)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        self.rnn = nn.GRU(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return (torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        y, h = self.rnn(x, state[0])
        return y, (h,)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (h0,) = state
        hs = []
        inp = x
        rnn = self.rnn
        for layer in range(self.num_layers):
            gi = step_linear(rnn, f"ih{layer}", inp, getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"bias_ih_l{layer}"))
            gh = step_linear(rnn, f"hh{layer}", h0[layer], getattr(rnn, f"weight_hh_l{layer}"), getattr(rnn, f"bias_hh_l{layer}"))
            (h,) = GRUCell.pointwise(gi, gh, [h0[layer]], [])  # the gate math of the reference cell
            hs.append(h)
            inp = h
        return inp, (torch.stack(hs),)
