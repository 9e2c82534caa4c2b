"""Two faulty cells: correct everywhere the old cell contract looked, wrong where it did not."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lstm_pipeline.cells.base import RecurrentCell, State


class Elman(RecurrentCell):
    """A correct multi-layer Elman (tanh) cell with dropout between layers: the base of the faults."""

    lstm_pipeline_api = "1"
    state_batch_dims = (1,)  # h (L, B, H)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        bound = 1.0 / math.sqrt(hidden_size)
        self.w_ih = nn.ParameterList(
            nn.Parameter(torch.empty(hidden_size, input_size if k == 0 else hidden_size).uniform_(-bound, bound))
            for k in range(num_layers))
        self.w_hh = nn.ParameterList(
            nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound)) for _ in range(num_layers))

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return (torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype),)

    def between_layers(self, y: Tensor) -> Tensor:
        return nn.functional.dropout(y, self.dropout, self.training)

    def layer_step(self, k: int, x: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(x @ self.w_ih[k].t() + h @ self.w_hh[k].t())

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        (h0,) = state
        y, hs = x, []
        for k in range(self.num_layers):
            if k > 0:
                y = self.between_layers(y)
            h, outs = h0[k], []
            for t in range(y.size(1)):
                h = self.layer_step(k, y[:, t], h)
                outs.append(h)
            y = torch.stack(outs, 1)
            hs.append(h)
        return y, (torch.stack(hs),)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        (h0,) = state
        y, hs = x, []
        for k in range(self.num_layers):
            if k > 0:
                y = self.between_layers(y)
            y = self.layer_step(k, y, h0[k])
            hs.append(y)
        return y, (torch.stack(hs),)


class StepFailsUnderInference(Elman):
    """Fault: ``step`` keeps the state's gradient for inspection (``retain_grad``), which raises
    when autograd is off, so ``generate`` (torch.inference_mode) crashes while training works."""

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        y, (h,) = super().step(x, state)
        h.retain_grad()  # RuntimeError under no_grad/inference_mode: h does not require grad there
        return y, (h,)


class NeverDropout(Elman):
    """Fault: takes ``dropout`` and stores it but never applies it."""

    def between_layers(self, y: Tensor) -> Tensor:
        return y
