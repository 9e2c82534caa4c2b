"""``cifg_lstm``: LSTM with a coupled input-forget gate (Greff et al., 2017, "LSTM: A Search Space
Odyssey"): the input gate is ``1 - f_t``, so the cell has three gates' worth of weights instead of four.

    f_t = sigmoid(W_f [h_{t-1}, x_t] + b_f)
    C_t = f_t * C_{t-1} + (1 - f_t) * tanh(W_c [h_{t-1}, x_t] + b_c)
    o_t = sigmoid(W_o [h_{t-1}, x_t] + b_o)
    h_t = o_t * tanh(C_t)
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .custom import CustomCell


class CIFGLSTM(CustomCell):
    """Coupled input-forget gate LSTM (state: h, C); gate order f, g, o."""

    num_gates = 3
    state_size = 2

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        c_prev = state[1]  # (B, H)
        a_f, a_g, a_o = (xg + hg).chunk(3, 1)  # (B, H) each
        f = torch.sigmoid(a_f)
        c = f * c_prev + (1.0 - f) * torch.tanh(a_g)
        h = torch.sigmoid(a_o) * torch.tanh(c)
        return [h, c]
