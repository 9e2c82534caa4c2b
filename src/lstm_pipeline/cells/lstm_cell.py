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
        # pre-activations W_*[h_{t-1}, x_t] + b_* of the four gates, (B, H) each
        a_i, a_f, a_g, a_o = (xg + hg).chunk(4, 1)
        i = torch.sigmoid(a_i)  # input gate
        f = torch.sigmoid(a_f)  # forget gate
        g = torch.tanh(a_g)     # candidate cell state
        o = torch.sigmoid(a_o)  # output gate
        c = f * c_prev + i * g
        h = o * torch.tanh(c)
        return [h, c]
