"""Logits processors: ``(history (B, t) long, logits (B, V) float) -> logits (B, V)``.

They compose in a list, applied in a fixed documented order (see ``PROCESSOR_ORDER``).
Filtering processors set excluded logits to ``-inf``.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: the order in which the built-in strategies apply processors
PROCESSOR_ORDER = ("temperature", "top_k", "top_p")


class LogitsProcessor:
    lstm_pipeline_api = "1"

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class Temperature(LogitsProcessor):
    def __init__(self, temperature: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {temperature}); for deterministic output use decoding=greedy.")
        self.temperature = temperature

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        return logits / self.temperature if self.temperature != 1.0 else logits


class TopK(LogitsProcessor):
    def __init__(self, top_k: int = 0):
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
        self.top_k = top_k

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.top_k <= 0 or self.top_k >= logits.size(-1):
            return logits
        kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, float("-inf"))


class TopP(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of most likely tokens whose mass reaches top_p."""

    def __init__(self, top_p: float = 1.0, min_tokens_to_keep: int = 1):
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p, self.min_tokens_to_keep = top_p, min_tokens_to_keep

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.top_p >= 1.0:
            return logits
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = (cum - sorted_logits.softmax(-1)) >= self.top_p  # mass before this token already enough
        remove[:, : self.min_tokens_to_keep] = False
        mask = torch.zeros_like(remove).scatter(-1, order, remove)
        return logits.masked_fill(mask, float("-inf"))
