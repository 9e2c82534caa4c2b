"""``rnn``: the Elman network, ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` with act tanh or
relu (``nonlinearity``), laid out as ``nn.RNN`` lays it out."""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .custom import CustomCell, PointwiseFn


def _tanh_step(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
    return [torch.tanh(xg + hg)]


def _relu_step(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
    return [torch.relu(xg + hg)]


class RNN(CustomCell):
    """Simple recurrent network (state: h (L, B, H))."""

    num_gates = 1
    state_size = 1
    NONLINEARITIES = {"tanh": _tanh_step, "relu": _relu_step}

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 nonlinearity: str = "tanh", compile: bool | str = False):
        if nonlinearity not in self.NONLINEARITIES:
            raise ValueError(f"model.cell.nonlinearity must be one of {sorted(self.NONLINEARITIES)}, "
                             f"not {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, dropout, compile=compile)

    def pointwise_function(self) -> PointwiseFn:
        return self.NONLINEARITIES[self.nonlinearity]
