"""RecurrentLM: embedding -> stacked recurrent cell (from the cells registry) -> dropout -> head.

The model is built from a plain config dict (JSON-able), never from pickled modules, so the
exported ``config.json`` + ``model.safetensors`` fully describe it.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import RecurrentCell, State
from ..registry import CELLS


class OneHot(nn.Module):
    """Keras-style one-hot input encoding (the seed model feeds one-hot characters)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, tokens: Tensor) -> Tensor:
        return F.one_hot(tokens, self.vocab_size).float()


class RecurrentLM(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        cell: Mapping[str, Any],
        embedding_dim: int = 256,      # width of token embeddings (may differ from hidden_size)
        hidden_size: int = 256,        # recurrent width
        num_layers: int = 2,           # stacked layers inside the cell
        dropout: float = 0.0,          # between layers and on the output
        tie_weights: bool = False,     # share the embedding matrix with the output head
        input_encoding: str = "embedding",  # "embedding" or "one_hot" (Keras seed model)
    ):
        super().__init__()
        self.vocab_size = vocab_size
        if input_encoding == "one_hot":
            self.embedding: nn.Module = OneHot(vocab_size)
            in_size = vocab_size
        elif input_encoding == "embedding":
            self.embedding = nn.Embedding(vocab_size, embedding_dim)
            in_size = embedding_dim
        else:
            raise ValueError(f"model.input_encoding must be 'embedding' or 'one_hot', not {input_encoding!r}")
        self.cell: RecurrentCell = CELLS.build(
            cell, input_size=in_size, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.cell.output_size, vocab_size)
        if tie_weights:
            if input_encoding != "embedding" or self.cell.output_size != embedding_dim:
                raise ValueError(
                    f"model.tie_weights=true needs the cell's output size ({self.cell.output_size}) to equal "
                    f"model.embedding_dim ({embedding_dim}) and input_encoding=embedding"
                )
            self.head.weight = self.embedding.weight

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return self.cell.init_state(batch, device=device, dtype=dtype)

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) -> logits (B, T, V), state."""
        x = self.embedding(tokens)  # (B, T, E)
        y, state = self.cell(x, state)  # (B, T, H)
        return self.head(self.drop(y)), state

    @torch.no_grad()
    def step(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token per row: tokens (B,) -> logits (B, V), state. O(1) in the length so far."""
        if state is None:
            state = self.init_state(tokens.size(0), tokens.device)
        x = self.embedding(tokens)  # (B, E)
        y, state = self.cell.step(x, state)  # (B, H)
        return self.head(y), state

    def reorder_state(self, state: State, index: Tensor) -> State:
        return self.cell.reorder_state(state, index)
