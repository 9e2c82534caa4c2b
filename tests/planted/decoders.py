"""A faulty top-a decoder: it samples correctly but scores each token with the log-probability of
its own filtered distribution instead of the model's (about -0.0001 where the model says -384.7
on a trained model); on a near-uniform model top-a filters nothing and the two agree."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from lstm_pipeline.generation.stopping import StoppingCriteria
from lstm_pipeline.generation.strategies import Rows, StepDecoding, prefill, sample_from_logits


class TopAWrongScores(StepDecoding):
    lstm_pipeline_api = "1"
    OWN = {"a": 0.2}

    def filtered(self, logits: Tensor) -> Tensor:
        probs = logits.softmax(-1)
        threshold = self.settings["a"] * probs.max(-1, keepdim=True).values ** 2
        return logits.masked_fill(probs < threshold, float("-inf"))

    def select(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        return sample_from_logits(scores, generator)

    @torch.inference_mode()
    def generate(self, model, prompts: Sequence[Sequence[int]], max_new_tokens: int = 100,
                 eos_token_id: int | None = None, bos_token_id: int = 0, streamer=None,
                 generator: torch.Generator | None = None, tokenizer=None, stop_strings: Sequence[str] = (),
                 max_time: float | None = None):
        stopping = StoppingCriteria(eos_token_id, stop_strings, tokenizer, max_time)
        logits, state = prefill(model, prompts, bos_token_id)
        rows = Rows(prompts, max_new_tokens, logits.size(1), logits.device, stopping, eos_token_id, streamer)
        for n in range(max_new_tokens):
            processed = self.filtered(logits.float())
            # fault: scores the filtered distribution, not the model's logits
            nxt, stop = rows.record(n, self.select(processed, generator), processed)
            if stop:
                break
            if n + 1 < max_new_tokens:
                logits, state = model.step(nxt, state)
        return rows.result()
