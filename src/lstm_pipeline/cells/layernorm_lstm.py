"""``layernorm_lstm``: LSTM with layer normalisation (Ba, Kiros & Hinton, 2016).

The input and recurrent projections are normalised separately (each over its 4H gate
pre-activations, with its own gain and bias), and so is the cell state before the output tanh:

    a_t = LN_x(W_x x_t) + LN_h(W_h h_{t-1})          split into i, f, g, o
    C_t = sigmoid(f) * C_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(LN_c(C_t))
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .custom import CustomCell



def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension. Traced for export it is written out in elementwise ops:
    ``F.layer_norm`` would record its width as a runtime size, which the ONNX exporter refuses."""
    if torch.jit.is_tracing():
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + eps) * weight + bias
    return F.layer_norm(x, [x.size(-1)], weight, bias, eps)

class LayerNormLSTM(CustomCell):
    """Layer-normalised LSTM (state: h, C)."""

    num_gates = 4
    state_size = 2

    def extra_parameters(self, layer: int) -> Dict[str, nn.Parameter]:
        g, h = 4 * self.hidden_size, self.hidden_size
        return {"ln_x_weight": nn.Parameter(torch.empty(g)), "ln_x_bias": nn.Parameter(torch.empty(g)),
                "ln_h_weight": nn.Parameter(torch.empty(g)), "ln_h_bias": nn.Parameter(torch.empty(g)),
                "ln_c_weight": nn.Parameter(torch.empty(h)), "ln_c_bias": nn.Parameter(torch.empty(h))}

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for name, p in self.named_parameters():
            if name.startswith("ln_"):
                nn.init.constant_(p, 1.0 if "_weight" in name else 0.0)

    def input_projection(self, k: int, x: Tensor) -> Tensor:
        """LN_x(W_x x_t + b) for the whole window at once: (B, T, 4H)."""
        xg = super().input_projection(k, x)
        return layer_norm(xg, getattr(self, f"ln_x_weight_l{k}"), getattr(self, f"ln_x_bias_l{k}"))

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        c_prev = state[1]  # (B, H)
        # xg is already LN_x(W_x x_t) (input_projection, for the whole window at once)
        a = xg + layer_norm(hg, extra[2], extra[3])  # (B, 4H)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        c = torch.sigmoid(a_f) * c_prev + torch.sigmoid(a_i) * torch.tanh(a_g)
        h = torch.sigmoid(a_o) * torch.tanh(layer_norm(c, extra[4], extra[5]))
        return [h, c]
