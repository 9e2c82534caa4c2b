"""Shared machinery for custom (non-fused) recurrent cells.

A custom cell only says what happens inside one time step; this base class does the rest:

* parameter layout per layer ``k`` (the same names ``nn.LSTM``/``nn.GRU``/``nn.RNN`` use, so their
  weights load into the matching reference cells and back):
  ``weight_ih_l{k}`` (G*H, in_k), ``weight_hh_l{k}`` (G*H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*H,),
  plus whatever :meth:`CustomCell.extra_parameters` adds (registered as ``{name}_l{k}``);
* the input projection of a whole window in one GEMM per layer (``x @ W_ih^T + b_ih`` for all T);
* a time loop that does only the recurrent GEMM (``h @ W_hh^T + b_hh``) and calls the cell's
  :meth:`CustomCell.pointwise` function, the elementwise gate math;
* stacking layers with dropout between them, state handling (a tuple of (L, B, H) tensors),
  ``step`` for generation, ``reorder_state`` for beam search;
* optional fusion of ``pointwise``: ``compile="script"`` (TorchScript) or ``compile="inductor"``
  (``torch.compile`` of the per-step function only, not of the time loop). ``compile=false`` (the
  default) runs the very same Python function eagerly. Compiled functions are cached per process
  (and torch.compile keeps its own on-disk cache between processes).

Writing a new cell: subclass, set ``num_gates`` (G, the number of H-wide chunks of the projections)
and ``state_size`` (how many (L, B, H) tensors the state has; state[0] is the output h), and write a
static ``pointwise(xg, hg, state, extra) -> new_state``. See docs/cells.md.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import RecurrentCell, State, step_linear

PointwiseFn = Callable[[Tensor, Tensor, List[Tensor], List[Tensor]], List[Tensor]]

COMPILE_MODES = ("eager", "script", "inductor")

# (function, mode) -> compiled function; one compilation per process and per function
_COMPILED: Dict[Tuple[PointwiseFn, str], PointwiseFn] = {}
#: seconds each (function name, mode) took to compile, for the benchmark and the docs
COMPILE_SECONDS: Dict[Tuple[str, str], float] = {}


def _compile_mode(compile: bool | str | None) -> str:
    if compile in (False, None, "false", "eager", "none", ""):
        return "eager"
    if compile is True or compile == "true":
        return "script"
    if compile in COMPILE_MODES:
        return str(compile)
    raise ValueError(
        f"model.cell.compile must be false, true (= 'script'), 'script' (TorchScript) or 'inductor' "
        f"(torch.compile of the per-step function), not {compile!r}"
    )


def compiled(fn: PointwiseFn, mode: str) -> PointwiseFn:
    """``fn`` fused by ``mode`` ('eager' returns it unchanged); cached per process."""
    if mode == "eager":
        return fn
    key = (fn, mode)
    if key not in _COMPILED:
        start = time.perf_counter()
        if mode == "script":
            with warnings.catch_warnings():  # torch 2.x marks TorchScript deprecated; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                out = torch.jit.script(fn)
        else:
            out = torch.compile(fn, dynamic=False, fullgraph=True)
        _COMPILED[key] = out
        COMPILE_SECONDS[(fn.__qualname__, mode)] = time.perf_counter() - start  # lazy for inductor
    return _COMPILED[key]


class _RecurrentTap(torch.autograd.Function):
    """The recurrent bias broadcast to (T, B, G*H), whose backward turns the gradients of all T
    recurrent pre-activations into the gradient of ``W_hh`` in ONE GEMM over the window.

    Autograd on a per-step ``h @ W_hh^T`` would compute T small (G*H, B) x (B, H) products and add
    them up one by one into ``W_hh.grad``. Instead the loop multiplies by a detached ``W_hh`` (so
    autograd only carries the gradient to h) and adds this tap; ``hs`` is the list the loop fills with
    h_{t-1} for every t, read back at backward time:
    dW_hh = sum_t dG_t^T h_{t-1} = dG^T (T*B, G*H) @ H_prev (T*B, H); db_hh = sum of dG.
    """

    @staticmethod
    def forward(ctx, w_hh: Tensor, b_hh: Tensor, steps: int, batch: int, hs: list) -> Tensor:
        ctx.hs = hs
        ctx.dtypes = (w_hh.dtype, b_hh.dtype)
        return b_hh.expand(steps, batch, b_hh.numel()).contiguous()  # (T, B, G*H)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # grad (T, B, G*H) = dL/d(recurrent pre-activation)
        h_prev = torch.stack([h.detach() for h in ctx.hs[: grad.size(0)]])  # (T, B, H)
        grad2 = grad.reshape(-1, grad.size(-1))
        # under autocast (trainer.precision=bf16-mixed) h is bfloat16 while grad is float32: one dtype
        # for the product, the weights' own for the gradients
        h_prev = h_prev.to(grad2.dtype)
        d_w = grad2.t().mm(h_prev.reshape(-1, h_prev.size(-1)))  # (G*H, H)
        w_dtype, b_dtype = ctx.dtypes
        return d_w.to(w_dtype), grad2.sum(0).to(b_dtype), None, None, None


class CustomCell(RecurrentCell):
    """Base class of the custom cells: subclass and write ``pointwise`` (see the module doc)."""

    #: G: the input and recurrent projections are (G*H)-wide
    num_gates: int = 4
    #: number of state tensors, each (L, B, H); state[0] is the hidden state h (the layer output)
    state_size: int = 1
    #: whether the layer has a recurrent projection at all (minimal cells do not)
    recurrent: bool = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 compile: bool | str = False):
        super().__init__(input_size, hidden_size, num_layers, dropout)
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, not {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {dropout}")
        self.compile_mode = _compile_mode(compile)
        gh = self.num_gates * hidden_size
        for k in range(num_layers):
            in_k = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gh, in_k)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(gh)))
            if self.recurrent:
                self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(gh, hidden_size)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(gh)))
            for name, p in self.extra_parameters(k).items():
                self.register_parameter(f"{name}_l{k}", p)
        self._extra_names = list(self.extra_parameters(0))
        self.state_batch_dims = (1,) * self.state_size
        self.reset_parameters()
        self._fn: Optional[PointwiseFn] = None

    # -- hooks for subclasses -----------------------------------------------------------
    def extra_parameters(self, layer: int) -> Dict[str, nn.Parameter]:
        """Parameters beyond the projections (peepholes, layer norms); name -> Parameter."""
        return {}

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as nn.LSTM does; subclasses may refine."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @staticmethod
    def pointwise(xg: Tensor, hg: Tensor, state: List[Tensor], extra: List[Tensor]) -> List[Tensor]:
        """One time step of one layer after the GEMMs.

        xg (B, G*H): input projection ``x_t W_ih^T + b_ih``; hg (B, G*H): recurrent projection
        ``h_{t-1} W_hh^T + b_hh``; state: this layer's state tensors (B, H) each; extra: this
        layer's extra parameters in ``extra_parameters`` order. Returns the new state (state[0] = h_t).
        Must be TorchScript-compatible (type hints, no Python closures) if ``compile='script'``.
        """
        raise NotImplementedError

    def input_projection(self, k: int, x: Tensor) -> Tensor:
        """x (B, T, in_k) -> (B, T, G*H), for the whole window at once (the default:
        ``x W_ih^T + b_ih``). Override to add work that does not depend on h (e.g. a layer norm)."""
        return F.linear(x, getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}"))

    def pointwise_function(self) -> PointwiseFn:
        """The per-step function to use (override to choose one from settings, e.g. tanh/relu)."""
        return type(self).pointwise

    # -- machinery ----------------------------------------------------------------------
    @property
    def step_fn(self) -> PointwiseFn:
        if self._fn is None:
            self._fn = compiled(self.pointwise_function(), self.compile_mode)
        return self._fn

    def layer_params(self, k: int) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor], List[Tensor]]:
        """(W_ih, b_ih, W_hh, b_hh, extra) of layer k, read by name at call time, so a functional
        weight drop that swaps ``weight_hh_l{k}`` for a masked tensor is honoured."""
        w_hh = getattr(self, f"weight_hh_l{k}") if self.recurrent else None
        b_hh = getattr(self, f"bias_hh_l{k}") if self.recurrent else None
        extra = [getattr(self, f"{n}_l{k}") for n in self._extra_names]
        return getattr(self, f"weight_ih_l{k}"), getattr(self, f"bias_ih_l{k}"), w_hh, b_hh, extra

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return tuple(torch.zeros(self.num_layers, batch, self.hidden_size, device=device, dtype=dtype)
                     for _ in range(self.state_size))

    def check_state(self, state: State, batch: int) -> None:
        if len(state) != self.state_size:
            raise ValueError(f"{type(self).__name__} state has {self.state_size} tensor(s), got {len(state)}")
        for s in state:
            if s.shape != (self.num_layers, batch, self.hidden_size):
                raise ValueError(
                    f"{type(self).__name__} state tensors must be (num_layers, batch, hidden) = "
                    f"{(self.num_layers, batch, self.hidden_size)}, got {tuple(s.shape)}"
                )

    def run_layer(self, k: int, x: Tensor, state: List[Tensor]) -> tuple[Tensor, List[Tensor]]:
        """One layer over a window: x (B, T, in_k), state [(B, H)] -> y (B, T, H), new state."""
        _, _, w_hh, b_hh, extra = self.layer_params(k)
        xg = self.input_projection(k, x)  # (B, T, G*H): the whole window in one GEMM
        fn = self.step_fn
        outs: List[Tensor] = []
        if torch.is_grad_enabled() and (w_hh.requires_grad or b_hh.requires_grad):
            # recurrent GEMM against a detached W_hh; its weight gradient comes from the tap
            hs = [state[0]]
            taps = _RecurrentTap.apply(w_hh, b_hh, x.size(1), x.size(0), hs).unbind(0)  # T x (B, G*H)
            w_t = w_hh.detach().t()
            for xg_t, tap in zip(xg.unbind(1), taps):  # (B, G*H)
                hg = torch.addmm(tap, state[0], w_t)  # (B, G*H): the only per-step GEMM
                state = fn(xg_t, hg, state, extra)
                outs.append(state[0])
                hs.append(state[0])
        else:
            w_t = w_hh.t()
            for xg_t in xg.unbind(1):
                state = fn(xg_t, torch.addmm(b_hh, state[0], w_t), state, extra)
                outs.append(state[0])
        return torch.stack(outs, 1), state  # (B, T, H)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.size(-1) != self.input_size:
            raise ValueError(f"{type(self).__name__} expects x of shape (B, T, {self.input_size}), "
                             f"got {tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.size(0), x.device, x.dtype)
        self.check_state(state, x.size(0))
        return self.run_layers(x, state, self.run_layer)

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One token for generation, x (B, in) -> y (B, H): ``forward`` on T=1 with the products
        through ``step_linear`` (per-thread weight slabs at batch 1, oneDNN above; with gradients
        enabled it is ``forward`` itself). A cell that overrides ``input_projection`` keeps it."""
        if torch.is_grad_enabled():
            return super().step(x, state)
        self.check_state(state, x.size(0))
        own_projection = type(self).input_projection is not CustomCell.input_projection
        fn = self.step_fn

        def layer(k: int, inp: Tensor, layer_state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
            w_ih, b_ih, w_hh, b_hh, extra = self.layer_params(k)
            if own_projection:
                xg = self.input_projection(k, inp.unsqueeze(1)).squeeze(1)
            else:
                xg = step_linear(self, f"ih{k}", inp, w_ih, b_ih)
            hg = step_linear(self, f"hh{k}", layer_state[0], w_hh, b_hh) if self.recurrent else xg  # minimal cells: unused
            new = fn(xg, hg, layer_state, extra)
            return new[0], new  # the output is h

        return self.run_layers(x, state, layer)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"dropout={self.dropout}, compile={self.compile_mode!r}")
