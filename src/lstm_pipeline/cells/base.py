"""The cell contract every recurrent cell (built-in or plugin) follows.

* ``__init__(input_size, hidden_size, num_layers=1, dropout=0.0, **own_settings)``
* ``output_size``: width of ``y`` (``hidden_size``, or ``proj_size`` where a cell projects).
* ``init_state(batch, device, dtype) -> State``: a tuple of tensors.
* ``forward(x, state) -> (y, state)`` with ``x`` (B, T, input_size) and ``y`` (B, T, output_size).
* ``step(x, state) -> (y, state)`` with ``x`` (B, input_size): one time step, for generation.
* ``state_batch_dims``: for each state tensor, which dimension is the batch, so that decoding can
  ``reorder_state(state, index)`` (beam search) without knowing the cell.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..kernels.int8 import _INT8, quantize_int8_  # noqa: F401  (part of the cell contract)
from ..kernels.step import step_linear, step_weight  # noqa: F401  (part of the cell contract)

State = tuple[Tensor, ...]


class RecurrentCell(nn.Module):
    #: plugin API this class implements (see lstm_pipeline.registry.API_VERSION)
    lstm_pipeline_api = "1"
    #: batch dimension of each state tensor; layer-major (L, B, H) states use 1
    state_batch_dims: Sequence[int] = (1,)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def run_layers(self, x: Tensor, state: State, layer) -> tuple[Tensor, State]:
        """The layer stack of a layer-major cell: ``layer(k, input, [s[k] for s in state]) -> (output,
        layer state)`` for k = 0 .. num_layers-1, plain dropout (``self.dropout``, training only) between
        layers, the layer states stacked back to (L, ...) tensors. ``x`` is (B, T, in) for a window or
        (B, in) for one step; returns the top layer's output and the new state."""
        new: list[list[Tensor]] = [[] for _ in state]
        inp = x
        for k in range(self.num_layers):
            inp, layer_state = layer(k, inp, [s[k] for s in state])
            for i, s in enumerate(layer_state):
                new[i].append(s)
            if k < self.num_layers - 1 and self.dropout > 0:
                inp = torch.nn.functional.dropout(inp, self.dropout, self.training)
        return inp, tuple(torch.stack(s) for s in new)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        raise NotImplementedError

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: x (B, E) -> y (B, H). The default runs ``forward`` on T=1."""
        y, state = self.forward(x.unsqueeze(1), state)
        return y.squeeze(1), state

    # -- state helpers shared by every cell -------------------------------------------
    def reorder_state(self, state: State, index: Tensor) -> State:
        """Select/reorder batch rows of the state (beam search): index (B',) -> state with B' rows."""
        return tuple(s.index_select(d, index) for s, d in zip(state, self._batch_dims(state)))

    def _batch_dims(self, state: State) -> Sequence[int]:
        dims = tuple(self.state_batch_dims)
        return dims if len(dims) == len(state) else (dims[0],) * len(state)

    @staticmethod
    def detach_state(state: State) -> State:
        return tuple(s.detach() for s in state)
