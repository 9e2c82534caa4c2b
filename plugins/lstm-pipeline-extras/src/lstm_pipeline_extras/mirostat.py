"""Mirostat v2 sampling (Basu et al., "Mirostat: a neural text decoding algorithm that directly
controls perplexity", ICLR 2021).

Mirostat keeps the surprise of the generated text near a target ``tau`` (bits per token, so
perplexity near 2**tau) with a feedback loop. Per row it holds a threshold ``mu`` (start ``2 tau``):

1. drop every token whose surprise ``-log2 p`` exceeds ``mu`` (the most likely token always stays);
2. sample from the renormalised rest;
3. ``mu <- mu - eta * (s - tau)`` with ``s`` the surprise of the sampled token under the
   distribution before truncation (the model's, after temperature).

Vectorised over the batch: ``mu`` is a (B,) tensor, reset at the start of every ``generate`` call.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from lstm_pipeline.generation.strategies import StepDecoding, sample_from_logits

LN2 = math.log(2.0)


class MirostatV2(StepDecoding):
    lstm_pipeline_api = "1"

    def __init__(self, tau: float = 5.0, eta: float = 0.1, temperature: float = 1.0):
        if not tau > 0:
            raise ValueError(f"decoding.tau (target surprise in bits per token) must be > 0, got {tau}")
        if not eta > 0:
            raise ValueError(f"decoding.eta (learning rate of mu) must be > 0, got {eta}")
        if not temperature > 0:
            raise ValueError(f"decoding.temperature must be > 0, got {temperature}")
        self.tau = tau                  # target surprise, bits per token
        self.eta = eta                  # how fast mu follows the observed surprise
        self.temperature = temperature  # applied before the surprise is measured
        self._mu: Tensor | None = None

    @torch.no_grad()
    def generate(self, model, prompts, *args, **kwargs):
        self._mu = None  # a fresh feedback loop per call
        return super().generate(model, prompts, *args, **kwargs)

    def select(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        logits = scores.float() / self.temperature  # (B, V)
        surprise = -torch.log_softmax(logits, -1) / LN2  # (B, V) bits
        if self._mu is None or self._mu.size(0) != logits.size(0):
            self._mu = torch.full((logits.size(0),), 2.0 * self.tau, device=logits.device)
        drop = surprise > self._mu[:, None]
        drop.scatter_(1, logits.argmax(-1, keepdim=True), False)  # keep at least the top token
        nxt = sample_from_logits(logits.masked_fill(drop, float("-inf")), generator)  # (B,)
        observed = surprise.gather(1, nxt[:, None]).squeeze(1)  # (B,)
        self._mu = self._mu - self.eta * (observed - self.tau)
        return nxt
