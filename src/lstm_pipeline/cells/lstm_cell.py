"""``lstm_cell``: the classic LSTM, written out gate by gate (a readable reference).

For each time step t and layer, with [h, x] the previous hidden state and the input:

    i_t = sigmoid(W_i [h_{t-1}, x_t] + b_i)        input gate
    f_t = sigmoid(W_f [h_{t-1}, x_t] + b_f)        forget gate
    g_t = tanh(W_c [h_{t-1}, x_t] + b_c)           candidate cell state
    o_t = sigmoid(W_o [h_{t-1}, x_t] + b_o)        output gate
    C_t = f_t * C_{t-1} + i_t * g_t
    h_t = o_t * tanh(C_t)

The weights are laid out exactly as ``nn.LSTM`` lays them out (gate order i, f, g, o; W split into
``weight_ih`` for x and ``weight_hh`` for h, with two biases), so an ``nn.LSTM`` state dict loads
into this cell and the two compute the same function.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .custom import CustomCell


class LSTMCell(CustomCell):
    """Reference LSTM (state: h (L, B, H), C (L, B, H))."""

    num_gates = 4
    state_size = 2

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        c_prev = state[1]  # (B, H)
        x_i, x_f, x_g, x_o = xg.chunk(4, 1)  # W_*x x_t + b_*   (B, H) each
        h_i, h_f, h_g, h_o = hg.chunk(4, 1)  # W_*h h_{t-1} + b_*
        i = torch.sigmoid(x_i + h_i)
        f = torch.sigmoid(x_f + h_f)
        g = torch.tanh(x_g + h_g)
        o = torch.sigmoid(x_o + h_o)
        c = f * c_prev + i * g
        h = o * torch.tanh(c)
        return [h, c]
