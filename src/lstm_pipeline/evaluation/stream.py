"""The carried-state pass over a token stream, which every evaluation makes.

The ids are cut into ``batch_size`` contiguous rows of ``L = (len(ids) - 1) // batch_size`` inputs
(:class:`~lstm_pipeline.data.batching.StreamBatches`; the tail that fills no row is not scored), and
read in windows of ``bptt`` columns. Invariant: window ``i + 1`` of row ``b`` starts from the state
window ``i`` of row ``b`` left, detached (no gradient crosses a window boundary), and the first
window from the zero state (``None``). So, whatever ``bptt``, the outputs of a row's windows,
concatenated along time, are those of one ``forward(row, None)`` over the whole row (up to float
rounding), and each target is scored exactly once, by a model that has read every token before it
in its row and none after.

:func:`carried_windows` is that pass over an id array (``evaluate``'s plain scoring, dynamic
evaluation, the neural cache); :func:`carry` is its one step, also taken by the Lightning
validation, whose windows come from the datamodule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
from torch import Tensor

from ..data.batching import StreamBatches

State = tuple  # the model's state: a tuple of tensors
Forward = Callable[[Tensor, "State | None"], "tuple[Any, State]"]


@dataclass
class Window:
    """One window of the carried pass."""

    x: Tensor               #: (B, T) int64 inputs
    y: Tensor               #: (B, T) int64 targets (x shifted by one token)
    out: Any                #: forward's first output on x: logits (B, T, V) for a model
    positions: np.ndarray   #: (B, T) int64: the index in ``ids`` of each target (``y == ids[positions]``)


def carry(forward: Forward, x: Tensor, state: State | None) -> tuple[Any, State]:
    """One step of the carried pass: ``forward(x, state)`` from ``state`` detached (``None``: the
    zero state) -> (out, the state after ``x``, to pass to the next window)."""
    if state is not None:
        state = tuple(s.detach() for s in state)
    return forward(x, state)


def carried_windows(forward: Forward, ids, batch_size: int, bptt: int, device="cpu") -> Iterator[Window]:
    """The windows of the carried pass over ``ids`` (N,) in order (see the module's invariant).

    ``forward(x (B, T), state) -> (out, state)`` is the model itself or any function of it (the cache
    reads the top layer's output); it runs under the caller's grad mode, on ``device``.
    Raises :class:`~lstm_pipeline.data.sources.DataError` when ``ids`` are too short for ``batch_size`` rows."""
    batches = StreamBatches(ids, batch_size, bptt, split="eval")
    state = None
    for i in range(len(batches)):
        x, y = batches.window(i)
        a, b = int(batches.offsets[i]), int(batches.offsets[i + 1])
        positions = batches.starts[:, None] + np.arange(a + 1, b + 1)[None, :]  # (B, T)
        x, y = x.to(device), y.to(device)
        out, state = carry(forward, x, state)
        yield Window(x, y, out, positions)
