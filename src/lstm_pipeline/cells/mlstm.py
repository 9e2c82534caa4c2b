"""``mlstm``: the matrix-memory LSTM of xLSTM (Beck et al., NeurIPS 2024, "xLSTM: Extended Long
Short-Term Memory", section 2.3), trained in the chunkwise-parallel form, stepped in the recurrent form.

Per head (width d = H / num_heads), with q, k, v, the gates' pre-activations i~, f~ (one scalar per
head) and o all computed from x_t alone (no h_{t-1}: the memory update is linear, so a window can
be computed in parallel over time):

    m_t = max(log f_t + m_{t-1}, i~_t)                   log f_t = logsigmoid(f~_t); stabiliser
    C_t = exp(log f_t + m_{t-1} - m_t) C_{t-1} + exp(i~_t - m_t) k_t v_t^T      (d x d) memory
    n_t = exp(log f_t + m_{t-1} - m_t) n_{t-1} + exp(i~_t - m_t) k_t            (d) normaliser
    h~_t = (q_t C_t / sqrt(d)) / (max(|q_t . n_t| / sqrt(d), exp(-m_t)) + eps)
    h_t = sigmoid(o_t) * HeadNorm(h~_t)                 (a layer norm per head, as the paper's blocks)

C and n are stored scaled by exp(-m_t); h~ does not depend on m (the floor exp(-m_t) is 1 in
unscaled units). ``step`` is this recurrence, one token at a time, O(1) in the length so far.
``forward`` computes the same h~ for a whole window chunk by chunk (:func:`mlstm_chunkwise`): inside
a chunk of L steps as a masked, decay-weighted attention (L x L), across chunks through the
carried (C, n, m). Both are the functions of ``transformers.models.xlstm`` (its native PyTorch
``mlstm_chunkwise_native_autograd`` / ``mlstm_recurrent_step_native``, eps 1e-6), which the tests
compare against. The stabiliser at a chunk's end is the recurrent one (max-plus algebra: the chunk
maximum), so the state a window ends in is the state the recurrence ends in, whatever the chunking.

Without ``output_gate`` (the xLSTM block's form, which gates with its own branch) h_t = HeadNorm(h~_t).

State: (h (L, B, H), C (L, B, heads, d, d), n (L, B, heads, d), m (L, B, heads)); h is the last
output (what ``RecurrentLM.top_hidden`` reads), not used by the recurrence.
Parameters per layer k: ``weight_ih_l{k}`` (4H + 2*heads, in_k) and ``bias_ih_l{k}``, rows in the
order q, k, v, o (H each), i~, f~ (heads each); ``norm_weight_l{k}``, ``norm_bias_l{k}`` (H,).
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import _INT8, RecurrentCell, State, step_linear
from .slstm import check_heads

EPS = 1e-6  # added to the denominator of h~ (transformers' default)
FORMS = ("chunkwise", "recurrent")


def mlstm_chunkwise(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, c: Tensor, n: Tensor, m: Tensor,
                    chunk_size: int = 64, eps: float = EPS) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """h~ for a whole window in the chunkwise-parallel form.

    q, k, v (B, heads, T, d); i, f (B, heads, T) gate pre-activations; c (B, heads, d, d), n (B, heads, d),
    m (B, heads) the state before the window. Returns h~ (B, heads, T, d) and the state after it.
    A last chunk shorter than ``chunk_size`` is computed as it is (no padding)."""
    scale = q.size(-1) ** -0.5
    log_f = F.logsigmoid(f)
    outs = []
    for s in range(0, q.size(2), chunk_size):
        qc, kc, vc = q[:, :, s:s + chunk_size], k[:, :, s:s + chunk_size], v[:, :, s:s + chunk_size]  # (B, nh, l, d)
        ic = i[:, :, s:s + chunk_size]  # (B, nh, l)
        b = log_f[:, :, s:s + chunk_size].cumsum(-1)  # log of the forget products from the chunk start
        steps = ic.size(-1)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=q.device).tril()
        # log weight of step s's key/value at step t: sum of log f over (s, t] plus i~_s
        log_d = (b.unsqueeze(-1) - b.unsqueeze(-2) + ic.unsqueeze(-2)).masked_fill(~causal, float("-inf"))
        m_t = torch.maximum(b + m.unsqueeze(-1), log_d.amax(-1))  # (B, nh, l): the recurrent stabiliser
        weights = (qc @ kc.transpose(-1, -2)) * scale * torch.exp(log_d - m_t.unsqueeze(-1))  # (B, nh, l, l)
        inter = torch.exp(b + m.unsqueeze(-1) - m_t).unsqueeze(-1)  # (B, nh, l, 1): decay of the carried state
        qs = qc * scale
        num = inter * (qs @ c) + weights @ vc  # (B, nh, l, d)
        den = inter * (qs @ n.unsqueeze(-1)) + weights.sum(-1, keepdim=True)  # (B, nh, l, 1)
        outs.append(num / (torch.maximum(den.abs(), torch.exp(-m_t).unsqueeze(-1)) + eps))
        # the state at the chunk's end
        m_next = m_t[..., -1]
        decay = torch.exp(b[..., -1] + m - m_next)  # (B, nh)
        kw = kc * torch.exp(b[..., -1:] - b + ic - m_next.unsqueeze(-1)).unsqueeze(-1)  # (B, nh, l, d)
        c = decay[..., None, None] * c + kw.transpose(-1, -2) @ vc
        n = decay[..., None] * n + kw.sum(-2)
        m = m_next
    return torch.cat(outs, 2), c, n, m


def mlstm_step(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, c: Tensor, n: Tensor, m: Tensor,
               eps: float = EPS) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of the recurrent form: q, k, v (B, heads, d); i, f (B, heads); c (B, heads, d, d),
    n (B, heads, d), m (B, heads) -> h~ (B, heads, d), c, n, m."""
    log_f_plus_m = F.logsigmoid(f) + m
    m_new = torch.maximum(log_f_plus_m, i)
    f_act = torch.exp(log_f_plus_m - m_new)
    i_act = torch.exp(i - m_new)
    c = f_act[..., None, None] * c + i_act[..., None, None] * (k.unsqueeze(-1) * v.unsqueeze(-2))
    n = f_act[..., None] * n + i_act[..., None] * k
    qs = q * q.size(-1) ** -0.5
    num = (qs.unsqueeze(-2) @ c).squeeze(-2)  # (B, nh, d)
    den = (qs * n).sum(-1, keepdim=True)  # (B, nh, 1)
    return num / (torch.maximum(den.abs(), torch.exp(-m_new).unsqueeze(-1)) + eps), c, n, m_new


def mlstm_recurrent(q: Tensor, k: Tensor, v: Tensor, i: Tensor, f: Tensor, c: Tensor, n: Tensor, m: Tensor,
                    eps: float = EPS) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The recurrent form over a window (:func:`mlstm_step` per token), with the arguments and
    results of :func:`mlstm_chunkwise`: the baseline the chunkwise form is measured against."""
    outs = []
    for t in range(q.size(2)):
        h, c, n, m = mlstm_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], c, n, m, eps)
        outs.append(h)
    return torch.stack(outs, 2), c, n, m


def head_norm(x: Tensor, weight: Tensor, bias: Tensor | None, heads: int, eps: float = 1e-5) -> Tensor:
    """Layer norm of each head separately (a group norm over the feature axis): x (..., H) -> (..., H).
    Written out in elementwise ops (traced for export, sizes stay constants)."""
    shape = x.shape
    xh = x.reshape(*shape[:-1], heads, shape[-1] // heads)
    mean = xh.mean(-1, keepdim=True)
    var = (xh - mean).pow(2).mean(-1, keepdim=True)
    y = ((xh - mean) * torch.rsqrt(var + eps)).reshape(shape) * weight
    return y + bias if bias is not None else y


def gate_bias_init_(bias: Tensor, heads: int) -> None:
    """The paper's models' gate biases: input gate N(0, 0.1), forget gate spread over [3, 6] (the
    memory is kept at the start of training)."""
    with torch.no_grad():
        bias[:heads].normal_(0.0, 0.1)
        bias[heads:].copy_(torch.linspace(3.0, 6.0, heads) if heads > 1 else torch.full((1,), 4.5))


class MLSTM(RecurrentCell):
    """Stacked mLSTM layers (state: h (L, B, H), C (L, B, heads, d, d), n (L, B, heads, d), m (L, B, heads))."""

    state_batch_dims = (1, 1, 1, 1)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 num_heads: int = 1, chunk_size: int = 64, form: str = "chunkwise", output_gate: bool = True):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, not {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        if chunk_size < 1:
            raise ValueError(f"model.cell.chunk_size must be a positive number of time steps, not {chunk_size}")
        if form not in FORMS:
            raise ValueError(f"model.cell.form must be one of {list(FORMS)}, not {form!r}")
        self.head_dim = check_heads(hidden_size, num_heads, f"mLSTM: model.hidden_size={hidden_size}")
        self.num_heads, self.chunk_size, self.form, self.output_gate = num_heads, chunk_size, form, bool(output_gate)
        width = (4 if output_gate else 3) * hidden_size + 2 * num_heads
        for k in range(num_layers):
            in_k = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(width, in_k)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(width)))
            self.register_parameter(f"norm_weight_l{k}", nn.Parameter(torch.ones(hidden_size)))
            self.register_parameter(f"norm_bias_l{k}", nn.Parameter(torch.zeros(hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Projections U(-1/sqrt(in), 1/sqrt(in)), their biases 0 but the gates' (:func:`gate_bias_init_`);
        the head norms 1 and 0."""
        h4 = (4 if self.output_gate else 3) * self.hidden_size
        for k in range(self.num_layers):
            w = getattr(self, f"weight_ih_l{k}")
            nn.init.uniform_(w, -1 / math.sqrt(w.size(1)), 1 / math.sqrt(w.size(1)))
            b = getattr(self, f"bias_ih_l{k}")
            nn.init.zeros_(b)
            gate_bias_init_(b.data[h4:], self.num_heads)
            nn.init.ones_(getattr(self, f"norm_weight_l{k}"))
            nn.init.zeros_(getattr(self, f"norm_bias_l{k}"))

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        L, nh, d = self.num_layers, self.num_heads, self.head_dim
        z = dict(device=device, dtype=dtype)
        return (torch.zeros(L, batch, self.hidden_size, **z), torch.zeros(L, batch, nh, d, d, **z),
                torch.zeros(L, batch, nh, d, **z), torch.zeros(L, batch, nh, **z))

    def _check(self, state: State, batch: int) -> None:
        L, nh, d = self.num_layers, self.num_heads, self.head_dim
        want = [(L, batch, self.hidden_size), (L, batch, nh, d, d), (L, batch, nh, d), (L, batch, nh)]
        if len(state) != 4 or [tuple(s.shape) for s in state] != want:
            raise ValueError(f"MLSTM state must be 4 tensors (h, C, n, m) of shapes {want}, "
                             f"got {[tuple(s.shape) for s in state]}")

    def _split(self, proj: Tensor) -> tuple[Tensor, ...]:
        """proj (..., 4H + 2*heads) -> q, k, v, o (..., H), i, f (..., heads); o is None without an output gate."""
        H, nh = self.hidden_size, self.num_heads
        if not self.output_gate:
            q, k, v, i, f = proj.split([H, H, H, nh, nh], -1)
            return q, k, v, None, i, f
        return proj.split([H, H, H, H, nh, nh], -1)

    def _out(self, k: int, h_tilde: Tensor, o: Tensor | None) -> Tensor:
        """h~ (..., H) -> sigmoid(o) * HeadNorm(h~) (HeadNorm(h~) without an output gate)."""
        norm = head_norm(h_tilde, getattr(self, f"norm_weight_l{k}"), getattr(self, f"norm_bias_l{k}"), self.num_heads)
        return norm if o is None else torch.sigmoid(o) * norm

    def run_layer(self, k: int, x: Tensor, state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
        """One layer over a window: x (B, T, in_k), state [h, C, n, m] (h unused) -> y (B, T, H), new state."""
        B, T = x.shape[:2]
        nh, d = self.num_heads, self.head_dim
        q, kk, v, o, i, f = self._split(F.linear(x, getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}")))
        heads = [t.reshape(B, T, nh, d).transpose(1, 2) for t in (q, kk, v)]  # (B, nh, T, d)
        gates = [t.transpose(1, 2) for t in (i, f)]  # (B, nh, T)
        if self.form == "chunkwise":
            h, c, n, m = mlstm_chunkwise(*heads, *gates, *state[1:], chunk_size=self.chunk_size)
        else:
            h, c, n, m = mlstm_recurrent(*heads, *gates, *state[1:])
        y = self._out(k, h.transpose(1, 2).reshape(B, T, nh * d), o)  # (B, T, H)
        return y, [y[:, -1], c, n, m]

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.size(-1) != self.input_size:
            raise ValueError(f"MLSTM expects x of shape (B, T, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        self._check(state, x.size(0))
        return self.run_layers(x, state, self.run_layer)

    def layer_step(self, k: int, x: Tensor, c: Tensor, n: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One token through layer k in the recurrent form: x (B, in_k), c, n, m (B, heads, ...) -> y (B, H), c, n, m."""
        B, nh, d = x.size(0), self.num_heads, self.head_dim
        w, b = getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}")
        # int8 steps (quantize_int8_) leave this product float: h~ is a ratio of q.k-weighted sums that the
        # head norm rescales, so int8's error in q and k shows at full size (0.07-0.12 nats in the tiny
        # models of tests/models/test_layout_matrix.py against 0.002 for the LSTM cells)
        proj = F.linear(x, w, b) if self.__dict__.get(_INT8) else step_linear(self, f"ih{k}", x, w, b)
        q, kk, v, o, i, f = self._split(proj)
        h, c, n, m = mlstm_step(q.reshape(B, nh, d), kk.reshape(B, nh, d), v.reshape(B, nh, d), i, f, c, n, m)
        return self._out(k, h.reshape(B, nh * d), o), c, n, m

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One token in the recurrent form: x (B, in) -> y (B, H); O(1) in the length so far."""
        self._check(state, x.size(0))
        def layer(k: int, inp: Tensor, layer_state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
            y, c, n, m = self.layer_step(k, inp, *layer_state[1:])
            return y, [y, c, n, m]  # h is the last output

        return self.run_layers(x, state, layer)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
                f"num_heads={self.num_heads}, chunk_size={self.chunk_size}, form={self.form!r}, "
                f"output_gate={self.output_gate}")
