"""Decoding strategies (registered under ``lstm_pipeline.decoders``).

A strategy drives ``model.step(tokens, state)``: the prompt is consumed once, then one token at a
time with the recurrent state carried; nothing is ever re-run. Sampling strategies are one loop
plus a list of logits processors (nucleus = sampling + top-p).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..registry import LOGITS_PROCESSORS
from .processors import PROCESSOR_ORDER, LogitsProcessor


@dataclass
class GenerationResult:
    sequences: list[list[int]]            # generated ids per row (prompt excluded)
    scores: list[float] = field(default_factory=list)  # sum of model log-probs of the generated ids


def sample_from_logits(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row: inverse CDF (cumsum + searchsorted), far faster than
    ``torch.multinomial`` on the CPU and the same distribution. logits (B, V) -> (B,)"""
    probs = torch.softmax(logits.float(), dim=-1)
    cdf = probs.cumsum(-1)  # (B, V)
    u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


@torch.no_grad()
def prefill(model, prompts: Sequence[Sequence[int]], bos_token_id: int) -> tuple[Tensor, tuple]:
    """Consume the prompts once; return the logits after each prompt's last token and the state.
    An empty prompt starts from the start-of-text state: the state after ``bos_token_id``."""
    rows = [list(p) if len(p) else [bos_token_id] for p in prompts]
    device = next(model.parameters()).device
    lengths = {len(r) for r in rows}
    if len(lengths) == 1:  # one fused call over the whole prompt
        logits, state = model(torch.tensor(rows, device=device))
        return logits[:, -1], state
    # ragged prompts: step all rows together; rows whose prompt ended keep their state
    B, T = len(rows), max(lengths)
    tokens = torch.zeros(B, T, dtype=torch.long, device=device)
    for b, r in enumerate(rows):
        tokens[b, : len(r)] = torch.tensor(r)
    lens = torch.tensor([len(r) for r in rows], device=device)
    state = model.init_state(B, device=device)
    last = None
    for t in range(T):
        logits, new_state = model.step(tokens[:, t], state)
        live = t < lens  # (B,)
        state = tuple(_where_rows(live, n, o, d) for n, o, d in zip(new_state, state, model.cell._batch_dims(state)))
        last = logits if last is None else torch.where(live[:, None], logits, last)
    return last, state


def _where_rows(mask: Tensor, new: Tensor, old: Tensor, batch_dim: int) -> Tensor:
    shape = [1] * new.dim()
    shape[batch_dim] = -1
    return torch.where(mask.view(shape), new, old)


class DecodingStrategy:
    lstm_pipeline_api = "1"

    def processors(self) -> list[LogitsProcessor]:
        return []

    def select(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, model, prompts: Sequence[Sequence[int]], max_new_tokens: int = 100,
                 eos_token_id: int | None = None, bos_token_id: int = 0, streamer=None,
                 generator: torch.Generator | None = None) -> GenerationResult:
        processors = self.processors()
        logits, state = prefill(model, prompts, bos_token_id)
        B = logits.size(0)
        out = torch.empty(B, max_new_tokens, dtype=torch.long, device=logits.device)
        scores = torch.zeros(B, dtype=torch.float64, device=logits.device)
        finished = torch.zeros(B, dtype=torch.bool, device=logits.device)
        n = 0
        for n in range(1, max_new_tokens + 1):
            history = out[:, : n - 1]
            processed = logits.float()
            for proc in processors:
                processed = proc(history, processed)
            nxt = self.select(processed, generator)  # (B,)
            if eos_token_id is not None:
                nxt = torch.where(finished, torch.full_like(nxt, eos_token_id), nxt)
            logp = torch.log_softmax(logits.float(), -1).gather(1, nxt[:, None]).squeeze(1)
            scores += torch.where(finished, torch.zeros_like(logp), logp).double()
            out[:, n - 1] = nxt
            if streamer is not None and not finished[0]:
                streamer.put(int(nxt[0]))
            if eos_token_id is not None:
                finished |= nxt == eos_token_id
                if bool(finished.all()):
                    break
            if n < max_new_tokens:
                logits, state = model.step(nxt, state)
        if streamer is not None:
            streamer.end()
        sequences = []
        for b in range(B):
            row = out[b, :n].tolist()
            if eos_token_id is not None and eos_token_id in row:
                row = row[: row.index(eos_token_id) + 1]
            sequences.append(row)
        return GenerationResult(sequences, scores.tolist())


class Greedy(DecodingStrategy):
    """Always the most likely next token."""

    def select(self, scores, generator):
        return scores.argmax(-1)


class Sample(DecodingStrategy):
    """Ancestral sampling with temperature (and optional top-k / top-p filtering)."""

    def __init__(self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
        self.settings = {"temperature": {"temperature": temperature}, "top_k": {"top_k": top_k},
                         "top_p": {"top_p": top_p}}
        self._processors = self.processors()  # validates the settings now, not mid-generation

    def processors(self) -> list[LogitsProcessor]:
        return [LOGITS_PROCESSORS.get(name)(**self.settings[name]) for name in PROCESSOR_ORDER if name in self.settings]

    def select(self, scores, generator):
        return sample_from_logits(scores, generator)


class Nucleus(Sample):
    """Nucleus (top-p) sampling: sampling restricted to the smallest set of tokens holding top_p of the mass."""

    def __init__(self, top_p: float = 0.9, temperature: float = 1.0, top_k: int = 0):
        super().__init__(temperature=temperature, top_k=top_k, top_p=top_p)
