"""``peephole_lstm``: LSTM whose gates also look at the cell state (Gers & Schmidhuber, 2000).

    i_t = sigmoid(W_i [h_{t-1}, x_t] + p_i * C_{t-1} + b_i)
    f_t = sigmoid(W_f [h_{t-1}, x_t] + p_f * C_{t-1} + b_f)
    C_t = f_t * C_{t-1} + i_t * tanh(W_c [h_{t-1}, x_t] + b_c)
    o_t = sigmoid(W_o [h_{t-1}, x_t] + p_o * C_t + b_o)
    h_t = o_t * tanh(C_t)

The peephole weights p_* are diagonal (one vector of H per gate per layer).
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor, nn

from .custom import CustomCell


class PeepholeLSTM(CustomCell):
    """LSTM with diagonal peephole connections (state: h, C)."""

    num_gates = 4
    state_size = 2

    def extra_parameters(self, layer: int) -> Dict[str, nn.Parameter]:
        return {name: nn.Parameter(torch.empty(self.hidden_size)) for name in ("peephole_i", "peephole_f", "peephole_o")}

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        c_prev = state[1]  # (B, H)
        p_i, p_f, p_o = extra[0], extra[1], extra[2]  # (H,) each
        a_i, a_f, a_g, a_o = (xg + hg).chunk(4, 1)  # (B, H) each
        i = torch.sigmoid(a_i + p_i * c_prev)
        f = torch.sigmoid(a_f + p_f * c_prev)
        c = f * c_prev + i * torch.tanh(a_g)
        o = torch.sigmoid(a_o + p_o * c)
        h = o * torch.tanh(c)
        return [h, c]
