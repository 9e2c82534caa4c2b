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

State = tuple[Tensor, ...]


def step_weight(owner: nn.Module, name: str, make, *sources: Tensor) -> Tensor:
    """``make(*sources)`` in the layout one-token steps read fastest, cached on ``owner`` while the
    ``sources`` are unchanged.

    At batch 1 a step is a matrix-vector product per weight. The CPU BLAS streams a (in, out) matrix
    about 3x faster than the (out, in) one PyTorch stores when the matrix does not fit in cache (a
    10k x 512 head: 0.85 ms against 2.6 ms here), so generation keeps ``W.t().contiguous()`` beside the
    parameter, e.g. ``step_weight(rnn, "ih0", torch.t, rnn.weight_ih_l0)``. The value is rebuilt when a
    source changes (in-place update, load_state_dict, a new tensor). With gradients enabled nothing is
    cached."""
    if torch.is_grad_enabled():
        return make(*sources)
    key = tuple((t.data_ptr(), t._version) for t in sources)
    cache = owner.__dict__.setdefault("_step_weight_cache", {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = make(*sources).detach().contiguous()
    cache[name] = (key, value)
    return value


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
