"""``slstm``: the scalar-memory LSTM with exponential gating of xLSTM (Beck et al., NeurIPS 2024,
"xLSTM: Extended Long Short-Term Memory", section 2.2).

For each time step t and layer, with the pre-activations split into heads (the recurrent weights
are block-diagonal: head j of h_{t-1} feeds only head j of the gates):

    (i~, f~, z~, o~) = W x_t + R h_{t-1} + b            W (4H, in) dense, R block-diagonal (heads)
    m_t = max(log f_t + m_{t-1}, i~)                     stabiliser (m_t = i~ at the zero state)
    i_t = exp(i~ - m_t)                                  exponential input gate (stabilised)
    f_t = exp(log f_t + m_{t-1} - m_t)                   log f_t = logsigmoid(f~), or f~ for
                                                         forget_gate="exp"
    c_t = f_t c_{t-1} + i_t tanh(z~)                     cell state
    n_t = f_t n_{t-1} + i_t                              normaliser state
    h_t = sigmoid(o~) c_t / n_t

c_t and n_t are stored scaled by exp(-m_t) (the stabiliser keeps exp() from overflowing); h_t does
not depend on m. The pointwise step is the one of the ``xlstm`` package's pure-PyTorch ("vanilla")
sLSTM backend (``xlstm/blocks/slstm/src/vanilla/slstm.py``), which the tests compare against: the
same gate order (i, f, z, o), the same clamps, and at the zero state (n = 0) m_t = i~. Where the
reference tests "all of n is 0" for the whole batch, this cell tests each element (a batch whose
rows were reset at document boundaries starts those rows afresh); both agree on every state a
model meets.

State: (h, c, n, m), each (num_layers, B, H). Parameters per layer k: ``weight_ih_l{k}`` (4H, in_k),
``bias_l{k}`` (4H,), ``weight_hh_l{k}`` (num_heads, 4*d, d) with d = H / num_heads: head j's rows
are its (i, f, z, o) gate rows, so that R h for head j is ``h_j @ weight_hh[j].T``.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import RecurrentCell, State, step_linear

FORGET_GATES = ("sigmoid", "exp")


def check_heads(width: int, num_heads: int, what: str) -> int:
    """d = width / num_heads; ValueError naming the settings when num_heads does not divide the width
    (``what`` says where the width comes from, e.g. "model.hidden_size=100")."""
    if num_heads < 1 or width % num_heads:
        raise ValueError(f"model.cell.num_heads={num_heads} must divide the width of the heads, {width} "
                         f"({what}); choose a divisor of {width}")
    return width // num_heads


def slstm_pointwise(raw: Tensor, h: Tensor, c: Tensor, n: Tensor, m: Tensor, exp_forget: bool) -> List[Tensor]:
    """One sLSTM step after the products: raw (B, 4H) = W x + R h + b in gate order (i, f, z, o);
    h, c, n, m (B, H) -> [h, c, n, m] new."""
    i_raw, f_raw, z_raw, o_raw = raw.chunk(4, -1)
    log_f_plus_m = m + (f_raw if exp_forget else F.logsigmoid(f_raw))
    m_new = torch.where(n == 0, i_raw, torch.maximum(i_raw, log_f_plus_m))
    one = torch.ones_like(i_raw)
    i_gate = torch.minimum(torch.exp(i_raw - m_new), one)
    f_gate = torch.minimum(torch.exp(log_f_plus_m - m_new), one)
    c_new = f_gate * c + i_gate * torch.tanh(z_raw)
    n_new = f_gate * n + i_gate
    h_new = torch.sigmoid(o_raw) * c_new / n_new
    return [h_new, c_new, n_new, m_new]


def block_diagonal_product(h: Tensor, weight: Tensor) -> Tensor:
    """R h for block-diagonal R: h (B, H), weight (heads, 4d, d) -> (B, 4H) in gate order (i, f, z, o)
    (head-major inside each gate), the layout of the reference's ``slstm_forward``."""
    heads, four_d, d = weight.shape
    y = torch.einsum("bnd,ngd->bng", h.reshape(h.size(0), heads, d), weight)  # (B, heads, 4d)
    return y.reshape(h.size(0), heads, 4, d).transpose(1, 2).reshape(h.size(0), heads * four_d)


class SLSTM(RecurrentCell):
    """Stacked sLSTM layers (state: h, c, n, m, each (L, B, H))."""

    state_batch_dims = (1, 1, 1, 1)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 num_heads: int = 1, forget_gate: str = "sigmoid"):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, not {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        if forget_gate not in FORGET_GATES:
            raise ValueError(f"model.cell.forget_gate must be one of {list(FORGET_GATES)}, not {forget_gate!r}")
        self.head_dim = check_heads(hidden_size, num_heads, f"sLSTM: model.hidden_size={hidden_size}")
        self.num_heads, self.forget_gate = num_heads, forget_gate
        for k in range(num_layers):
            in_k = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(4 * hidden_size, in_k)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(num_heads, 4 * self.head_dim,
                                                                                 self.head_dim)))
            self.register_parameter(f"bias_l{k}", nn.Parameter(torch.empty(4 * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Input weights U(-1/sqrt(in), 1/sqrt(in)); recurrent weights U(-1/sqrt(d), 1/sqrt(d)); biases 0
        except the forget gate's, spread over [3, 6] (forget slowly at the start, as the paper's
        models do)."""
        h = self.hidden_size
        for k in range(self.num_layers):
            w = getattr(self, f"weight_ih_l{k}")
            nn.init.uniform_(w, -1 / math.sqrt(w.size(1)), 1 / math.sqrt(w.size(1)))
            nn.init.uniform_(getattr(self, f"weight_hh_l{k}"), -1 / math.sqrt(self.head_dim), 1 / math.sqrt(self.head_dim))
            b = getattr(self, f"bias_l{k}")
            with torch.no_grad():
                b.zero_()
                b[h:2 * h] = torch.linspace(3.0, 6.0, h) if self.forget_gate == "sigmoid" else 0.0
        return None

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return tuple(torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype)
                     for _ in range(4))

    def _check(self, state: State, batch: int) -> None:
        want = (self.num_layers, batch, self.hidden_size)
        if len(state) != 4 or any(s.shape != want for s in state):
            raise ValueError(f"SLSTM state must be 4 tensors (h, c, n, m) of shape (num_layers, batch, hidden) = "
                             f"{want}, got {[tuple(s.shape) for s in state]}")

    def run_layer(self, k: int, x: Tensor, state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
        """One layer over a window: x (B, T, in_k), state [h, c, n, m] (B, H) -> y (B, T, H), new state."""
        xg = F.linear(x, getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_l{k}"))  # (B, T, 4H): one GEMM
        r = getattr(self, f"weight_hh_l{k}")
        exp_forget = self.forget_gate == "exp"
        outs = []
        for xg_t in xg.unbind(1):
            state = slstm_pointwise(xg_t + block_diagonal_product(state[0], r), *state, exp_forget)
            outs.append(state[0])
        return torch.stack(outs, 1), state

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.size(-1) != self.input_size:
            raise ValueError(f"SLSTM expects x of shape (B, T, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        self._check(state, x.size(0))
        return self.run_layers(x, state, self.run_layer)

    def layer_step(self, k: int, x: Tensor, state: List[Tensor]) -> List[Tensor]:
        """One token through layer k: x (B, in_k), state [h, c, n, m] (B, H) -> new [h, c, n, m]; the
        input product through ``step_linear`` (per-thread slabs, oneDNN, int8 when quantised)."""
        xg = step_linear(self, f"ih{k}", x, getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_l{k}"))
        return slstm_pointwise(xg + block_diagonal_product(state[0], getattr(self, f"weight_hh_l{k}")),
                               *state, self.forget_gate == "exp")

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One token: x (B, in) -> y (B, H)."""
        self._check(state, x.size(0))
        def layer(k: int, inp: Tensor, layer_state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
            new = self.layer_step(k, inp, layer_state)
            return new[0], new  # the output is h

        return self.run_layers(x, state, layer)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
                f"num_heads={self.num_heads}, forget_gate={self.forget_gate!r}")
