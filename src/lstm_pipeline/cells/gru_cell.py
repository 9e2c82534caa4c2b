"""``gru_cell``: the GRU (Cho et al., 2014) written out gate by gate, in ``nn.GRU``'s convention:

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Weights are laid out as ``nn.GRU`` lays them out (gate order r, z, n), so its state dict loads here.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .custom import CustomCell


class GRUCell(CustomCell):
    """Reference GRU (state: h (L, B, H))."""

    num_gates = 3
    state_size = 1

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        h_prev = state[0]  # (B, H)
        x_r, x_z, x_n = xg.chunk(3, 1)
        h_r, h_z, h_n = hg.chunk(3, 1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h_prev
        return [h]
