"""Contrastive search (Su et al., 2022) with the recurrent hidden state as the representation.

Each step takes the ``top_k`` most likely tokens, advances the state once for all of them in one
batched ``model.step`` (B * top_k rows), and picks per row the candidate maximising
``(1 - penalty_alpha) * p(token) - penalty_alpha * max cosine(h_candidate, h_context)``, where ``h`` is
the top layer of the first state tensor (for an LSTM: the output ``h`` of the last layer) and the
context is the state after the prompt and after every generated token. The chosen candidate's
state and logits are kept, so no step is recomputed. The context grows by one vector per token
(hidden_size floats); ``context_window`` bounds it for very long outputs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .stopping import StoppingCriteria
from .strategies import DecodingStrategy, GenerationResult, Rows, prefill


class ContrastiveSearch(DecodingStrategy):
    OWN = {"top_k": 4, "penalty_alpha": 0.6, "context_window": 0}

    @classmethod
    def name(cls):
        return "contrastive"

    def check(self):
        s = self.settings
        if not isinstance(s["top_k"], int) or s["top_k"] < 1:
            raise ValueError(f"decoding.top_k must be an int >= 1 for contrastive search, got {s['top_k']!r}")
        if not 0 <= s["penalty_alpha"] <= 1:
            raise ValueError(f"decoding.penalty_alpha must be in [0, 1], got {s['penalty_alpha']}")
        if not isinstance(s["context_window"], int) or s["context_window"] < 0:
            raise ValueError(f"decoding.context_window must be an int >= 0 (0 = whole context), got {s['context_window']!r}")

    @torch.inference_mode()
    def generate(self, model, prompts: Sequence[Sequence[int]], max_new_tokens: int = 100,
                 eos_token_id: int | None = None, bos_token_id: int = 0, streamer=None,
                 generator: torch.Generator | None = None, tokenizer=None, stop_strings: Sequence[str] = (),
                 max_time: float | None = None) -> GenerationResult:
        k, alpha, window = self.settings["top_k"], float(self.settings["penalty_alpha"]), self.settings["context_window"]
        stopping = StoppingCriteria(eos_token_id, stop_strings, tokenizer, max_time)
        logits, state = prefill(model, prompts, bos_token_id)
        B, V = logits.shape
        book = Rows(prompts, max_new_tokens, V, logits.device, stopping, eos_token_id, streamer)
        processors = self._setup(self.processors(), book.P, max_new_tokens, eos_token_id)
        first = F.normalize(model.top_hidden(state).float(), dim=-1)  # (B, D)
        # every context vector so far, written in place (no re-stacking of the whole context per step)
        context = first.new_empty(B, max_new_tokens + 1, first.size(1))
        context[:, 0] = first
        rows = torch.arange(B, device=logits.device)
        for n in range(max_new_tokens):
            processed = logits.float()
            for proc in processors:
                processed = proc(book.seen(n), processed)
            probs = processed.softmax(-1)
            cand_p, cand = torch.topk(probs, min(k, V), dim=-1)  # (B, k)
            kk = cand.size(1)
            cand_logits, cand_state = model.step(cand.flatten(), model.reorder_state(state, rows.repeat_interleave(kk)))
            h = F.normalize(model.top_hidden(cand_state).float(), dim=-1).view(B, kk, -1)  # (B, k, D)
            ctx = context[:, max(0, n + 1 - window) if window else 0: n + 1]  # (B, t, D)
            degeneration = torch.einsum("bkd,btd->bkt", h, ctx).amax(-1)  # (B, k)
            pick = ((1 - alpha) * cand_p - alpha * degeneration).argmax(-1)  # (B,)
            chosen = rows * kk + pick
            _, stop = book.record(n, cand.gather(1, pick[:, None]).squeeze(1), logits)
            if stop:
                break
            # the chosen candidate's step is the next step: keep its logits and state
            logits = cand_logits.index_select(0, chosen)
            state = model.reorder_state(cand_state, chosen)
            context[:, n + 1] = h.flatten(0, 1).index_select(0, chosen)
        return book.result()
