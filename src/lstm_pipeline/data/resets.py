"""Zeroing the recurrent state where a new document starts (``reset_mask`` in a batch).

The model runs on the window in segments cut at every column where some row resets; before a
segment, the rows that reset there get the zero state (the initial state of the built-in cells).
With no reset in a window this is exactly one ``model(x, state)`` call.
"""
from __future__ import annotations

import torch
from torch import Tensor


def reset_state(model, state, keep: Tensor):
    """Multiply each state tensor by ``keep`` (B,) along its batch dimension: 0 zeroes that row."""
    out = []
    for s, d in zip(state, model.state_batch_dims(state)):
        shape = [1] * s.dim()
        shape[d] = -1
        out.append(s * keep.to(s.dtype).view(shape))
    return tuple(out)


def forward_with_resets(model, x: Tensor, state, reset_mask: Tensor | None = None, forward=None):
    """x (B, T), reset_mask (B, T) bool or None -> (logits (B, T, V), state).
    ``forward(x, state) -> (logits, state)`` runs one segment (default: ``model`` itself)."""
    model_fn = forward or model
    if reset_mask is None:
        return model_fn(x, state)
    cols = torch.nonzero(reset_mask.any(0)).flatten().tolist()  # columns where some row resets
    if not cols:
        return model_fn(x, state)
    if cols == [0] and (state is None or bool(reset_mask[:, 0].all())):
        return model_fn(x, None)  # every row starts fresh: the zero state
    bounds = sorted(set(cols) | {0}) + [x.size(1)]
    outs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if state is not None and reset_mask[:, a].any():
            state = reset_state(model, state, ~reset_mask[:, a])
        logits, state = model_fn(x[:, a:b], state)  # (B, b - a, V)
        outs.append(logits)
    return torch.cat(outs, dim=1), state
