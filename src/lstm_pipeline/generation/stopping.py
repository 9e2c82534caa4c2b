"""Stopping criteria: end-of-sequence token, stop strings and a time budget (the token budget,
``max_new_tokens``, bounds the loop itself).

Stop strings are checked on *decoded text*: each step decodes the last few generated tokens of every
running row, so a stop string split over several tokens (or several bytes of one character) is
found. Only the generated text is searched (a stop string inside the prompt never stops
generation); the stop string is kept in the output.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import Tensor


class StoppingCriteria:
    def __init__(self, eos_token_id: int | None = None, stop_strings: Sequence[str] = (), tokenizer=None,
                 max_time: float | None = None):
        stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or ())
        if any(not isinstance(s, str) or not s for s in stop_strings):
            raise ValueError(f"stop_strings must be a list of non-empty strings, got {stop_strings!r}")
        if stop_strings and tokenizer is None:
            raise ValueError("stop_strings need the tokenizer to decode text: pass tokenizer= to generate().")
        if max_time is not None and not max_time > 0:
            raise ValueError(f"max_time must be > 0 seconds (or null for no limit), got {max_time}")
        self.eos_token_id = eos_token_id
        self.stop_strings = stop_strings
        self.tokenizer = tokenizer
        self.max_time = max_time
        # tokens to decode: a character may span up to 4 byte-level tokens
        self.window = 4 * max((len(s) for s in stop_strings), default=0) + 1
        self.started = time.monotonic()

    def timed_out(self) -> bool:
        return self.max_time is not None and time.monotonic() - self.started >= self.max_time

    def __call__(self, generated: Tensor, finished: Tensor) -> Tensor:
        """generated (B, n) -> (B,) bool: rows that stop after their latest token."""
        last = generated[:, -1]
        done = last == self.eos_token_id if self.eos_token_id is not None else torch.zeros_like(last, dtype=torch.bool)
        if self.stop_strings:
            tail = generated[:, -self.window:].tolist()
            running = (~finished).tolist()
            hits = [run and self._has_stop(ids) for ids, run in zip(tail, running)]
            done = done | torch.tensor(hits, dtype=torch.bool, device=generated.device)
        return done

    def _has_stop(self, ids: list[int]) -> bool:
        # rows stop at the first step a stop string shows, so any hit in the window is a new one
        text = self.tokenizer.decode(ids)
        return any(s in text for s in self.stop_strings)
