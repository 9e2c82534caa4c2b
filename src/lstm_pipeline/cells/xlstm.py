"""``xlstm``: a stack of residual xLSTM blocks, mLSTM blocks with sLSTM blocks where ``slstm_at``
says (Beck et al., NeurIPS 2024, "xLSTM: Extended Long Short-Term Memory", section 2.4 and
appendix; the paper's xLSTM[7:1] is 7 mLSTM blocks to 1 sLSTM block).

Every block is pre-norm and residual on a stream of width H = hidden_size (x -> x + f(LN(x))):

* mLSTM block ("pre up-projection"): LN, up-projection to two branches of width P = proj_factor*H,
  x_m and z; an mLSTM layer on x_m (``cells/mlstm.py``, no output gate, per-head norm) plus a learned
  skip of x_m, gated by SiLU(z); down-projection back to H.
* sLSTM block ("post up-projection"): LN, an sLSTM layer (``cells/slstm.py``, block-diagonal
  recurrence) with per-head norm, added to the stream; then LN, a gated feed-forward network
  (GELU(W_a x) * W_b x, width ffn_factor*H) and down-projection, added to the stream.

A final LN closes the stack. Inputs of another width (input_size != H) go through a linear
projection first. ``dropout`` drops each block's branch output in training.

The paper's blocks also have a causal convolution (kernel 4) before the q/k (mLSTM) and i/f
(sLSTM) projections; it is left out here (every state is a gate memory, no window of past inputs),
as are the head-wise (block-diagonal) q/k/v projections (dense here).

State (a tuple, batch at dim 1 everywhere): h (1, B, H), the stack's last output (what
``RecurrentLM.top_hidden`` reads); for the mLSTM blocks, bottom first, C (Lm, B, heads, d, d),
n (Lm, B, heads, d), m (Lm, B, heads); then for the sLSTM blocks h, c, n, m (Ls, B, H) each. A
stack without sLSTM blocks has no sLSTM tensors (and the other way round).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import _INT8, RecurrentCell, State, step_linear
from .layernorm_lstm import layer_norm
from .mlstm import MLSTM, head_norm
from .slstm import FORGET_GATES, SLSTM, check_heads


class _Norm(nn.Module):
    """Layer norm over the last dimension (trace-safe for export, see ``layernorm_lstm.layer_norm``)."""

    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.weight, self.bias)


def _linear(module: nn.Linear, x: Tensor, int8: bool = True) -> Tensor:
    """``module(x)``; a one-token x (B, in) through ``step_linear`` (the fast step products, dynamic
    int8 when quantised, unless ``int8`` is false: then float where the model is quantised)."""
    if x.dim() == 2 and (int8 or not module.__dict__.get(_INT8)):
        return step_linear(module, "weight", x, module.weight, module.bias)
    return F.linear(x, module.weight, module.bias)


class MLSTMBlock(nn.Module):
    """x (B, [T,] H) -> x + down(SiLU(z) * (mLSTM(x_m) + skip * x_m)) with (x_m, z) = up(LN(x))."""

    def __init__(self, hidden_size: int, inner: int, num_heads: int, chunk_size: int):
        super().__init__()
        self.norm = _Norm(hidden_size)
        self.up = nn.Linear(hidden_size, 2 * inner)
        self.cell = MLSTM(inner, inner, 1, num_heads=num_heads, chunk_size=chunk_size, output_gate=False)
        self.skip = nn.Parameter(torch.ones(inner))
        self.down = nn.Linear(inner, hidden_size)

    def branch(self, x: Tensor, c: Tensor, n: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The residual branch: x (B, T, H) or one token (B, H); c, n, m (B, heads, ...) -> f(x), c, n, m."""
        # float under int8 steps, as the mLSTM's own projection (cells/mlstm.py: int8 error in q, k shows at full size)
        xm, z = _linear(self.up, self.norm(x), int8=False).chunk(2, -1)
        if x.dim() == 3:
            h, (_, c, n, m) = self.cell.run_layer(0, xm, [None, c, n, m])
        else:
            h, c, n, m = self.cell.layer_step(0, xm, c, n, m)
        return _linear(self.down, F.silu(z) * (h + self.skip * xm)), c, n, m


class SLSTMBlock(nn.Module):
    """x -> x + HeadNorm(sLSTM(LN(x))), then x -> x + FFN(LN(x)) (gated GELU)."""

    def __init__(self, hidden_size: int, ffn: int, num_heads: int, forget_gate: str):
        super().__init__()
        self.num_heads = num_heads
        self.norm = _Norm(hidden_size)
        self.cell = SLSTM(hidden_size, hidden_size, 1, num_heads=num_heads, forget_gate=forget_gate)
        self.cell_norm = _Norm(hidden_size)  # per head (head_norm); weight and bias over H
        self.ffn_norm = _Norm(hidden_size)
        self.ffn_up = nn.Linear(hidden_size, 2 * ffn)
        self.ffn_down = nn.Linear(ffn, hidden_size)

    def cell_branch(self, x: Tensor, state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
        inp = self.norm(x)
        if x.dim() == 3:
            h, state = self.cell.run_layer(0, inp, state)
        else:
            state = self.cell.layer_step(0, inp, state)
            h = state[0]
        return head_norm(h, self.cell_norm.weight, self.cell_norm.bias, self.num_heads), state

    def ffn_branch(self, x: Tensor) -> Tensor:
        a, b = _linear(self.ffn_up, self.ffn_norm(x)).chunk(2, -1)
        return _linear(self.ffn_down, F.gelu(a) * b)


class XLSTM(RecurrentCell):
    """Residual pre-norm stack of ``num_layers`` xLSTM blocks: sLSTM at the indices in ``slstm_at``,
    mLSTM elsewhere (see the module doc for the state)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 slstm_at: Sequence[int] = [], num_heads: int = 1, proj_factor: float = 2.0,
                 ffn_factor: float = 1.3, chunk_size: int = 64, forget_gate: str = "sigmoid"):
        # slstm_at's default is a list (what a config file gives), read here and never changed
        super().__init__(input_size, hidden_size, num_layers, dropout)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, not {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        slstm_at = sorted({int(i) for i in (slstm_at or ())})
        if any(not 0 <= i < num_layers for i in slstm_at):
            hint = (" (model.dropout_hidden > 0 makes every layer its own one-block cell: use model.dropout, "
                    "which drops each block's output, and set model.dropout_hidden=0)") if num_layers == 1 else ""
            raise ValueError(f"model.cell.slstm_at={slstm_at} names blocks outside 0..{num_layers - 1} "
                             f"(model.num_layers={num_layers} blocks); give block indices below num_layers{hint}")
        if forget_gate not in FORGET_GATES:
            raise ValueError(f"model.cell.forget_gate must be one of {list(FORGET_GATES)}, not {forget_gate!r}")
        if proj_factor <= 0 or ffn_factor <= 0:
            raise ValueError(f"model.cell.proj_factor and ffn_factor must be > 0, not {proj_factor}, {ffn_factor}")
        inner, ffn = max(1, round(proj_factor * hidden_size)), max(1, round(ffn_factor * hidden_size))
        check_heads(inner, num_heads, f"mLSTM blocks: model.cell.proj_factor={proj_factor} x model.hidden_size={hidden_size}")
        if slstm_at:
            check_heads(hidden_size, num_heads, f"sLSTM blocks: model.hidden_size={hidden_size}")
        self.slstm_at, self.num_heads, self.proj_factor, self.ffn_factor = slstm_at, num_heads, proj_factor, ffn_factor
        self.chunk_size, self.forget_gate = chunk_size, forget_gate
        self.proj_in = nn.Linear(input_size, hidden_size) if input_size != hidden_size else None
        self.blocks = nn.ModuleList(
            SLSTMBlock(hidden_size, ffn, num_heads, forget_gate) if k in slstm_at
            else MLSTMBlock(hidden_size, inner, num_heads, chunk_size) for k in range(num_layers))
        self.post_norm = _Norm(hidden_size)
        self.n_m = num_layers - len(slstm_at)
        self.n_s = len(slstm_at)
        self.state_batch_dims = (1,) * (1 + 3 * (self.n_m > 0) + 4 * (self.n_s > 0))

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        z = dict(device=device, dtype=dtype)
        state = [torch.zeros(1, batch, self.hidden_size, **z)]
        if self.n_m:
            cell = next(b.cell for b in self.blocks if isinstance(b, MLSTMBlock))
            state += [s.expand(self.n_m, *s.shape[1:]).clone() for s in cell.init_state(batch, **z)[1:]]
        if self.n_s:
            state += [torch.zeros(self.n_s, batch, self.hidden_size, **z) for _ in range(4)]
        return tuple(state)

    def _check(self, state: State, batch: int) -> None:
        want = [(s.size(0), batch, *s.shape[2:]) for s in self.init_state(1)]
        if [tuple(s.shape) for s in state] != want:
            raise ValueError(f"XLSTM state must be {len(want)} tensors of shapes {want}, "
                             f"got {[tuple(s.shape) for s in state]}")

    def _run(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        """The stack on x (B, T, in) or one token (B, in)."""
        batch = x.size(0)
        if state is None:
            state = self.init_state(batch, x.device, x.dtype)
        self._check(state, batch)
        m_state = list(state[1:4]) if self.n_m else []
        s_state = list(state[1 + 3 * (self.n_m > 0):]) if self.n_s else []
        m_new: list[list[Tensor]] = [[], [], []]
        s_new: list[list[Tensor]] = [[], [], [], []]
        x = _linear(self.proj_in, x) if self.proj_in is not None else x
        drop = self.dropout if self.training else 0.0
        mi = si = 0
        for block in self.blocks:
            if isinstance(block, MLSTMBlock):
                out, c, n, m = block.branch(x, m_state[0][mi], m_state[1][mi], m_state[2][mi])
                x = x + F.dropout(out, drop, self.training) if drop else x + out
                for j, s in enumerate((c, n, m)):
                    m_new[j].append(s)
                mi += 1
            else:
                out, st = block.cell_branch(x, [s[si] for s in s_state])
                x = x + F.dropout(out, drop, self.training) if drop else x + out
                out = block.ffn_branch(x)
                x = x + F.dropout(out, drop, self.training) if drop else x + out
                for j, s in enumerate(st):
                    s_new[j].append(s)
                si += 1
        y = self.post_norm(x)
        last = y[:, -1] if y.dim() == 3 else y
        new = [last.unsqueeze(0)] + [torch.stack(s) for s in m_new if s] + [torch.stack(s) for s in s_new if s]
        return y, tuple(new)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.size(-1) != self.input_size:
            raise ValueError(f"XLSTM expects x of shape (B, T, {self.input_size}), got {tuple(x.shape)}")
        return self._run(x, state)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One token: x (B, in) -> y (B, H), every block in its recurrent form (O(1) per token)."""
        return self._run(x, state)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, dropout={self.dropout}, "
                f"slstm_at={self.slstm_at}, num_heads={self.num_heads}")
