"""Beam search, beam sampling and diverse (group) beam search, vectorised over batch x beams.

All hypotheses of all prompts live in one batch of ``B * num_beams`` rows: one ``model.step`` per
token for every hypothesis, and after each step the recurrent state follows the surviving beams
through the cell contract, ``model.reorder_state(state, index)``. There is no Python loop over
hypotheses (diverse beam search loops over its few groups only).

The bookkeeping follows Hugging Face ``generate(num_beams=...)`` so that the same model gives the
same sequences and scores (tests/generation/test_decoding_beam.py checks this against transformers):

* each step keeps the ``2 * num_beams`` best continuations of every prompt; the best ``num_beams``
  that do not end (end-of-sequence token, or the token budget reached) continue;
* continuations that end and rank among the first ``num_beams`` become finished hypotheses, scored
  ``sum of log-probs / generated_length ** length_penalty``; the best ``num_beams`` are kept;
* ``early_stopping``: ``true`` stops a prompt once it has ``num_beams`` finished hypotheses;
  ``false`` stops when the best running beam can no longer beat the worst finished one at its
  current length; ``"never"`` assumes, with ``length_penalty > 0``, that it could at the budget's end.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .stopping import StoppingCriteria
from .strategies import DecodingStrategy, GenerationResult, prefill, prompt_history

BIG = 1.0e9  # the penalty that takes a candidate out of the running (as in transformers)


def _gather(t: Tensor, index: Tensor) -> Tensor:
    """t (N, K, ...) rows picked per problem by index (N, K') -> (N, K', ...)."""
    idx = index.reshape(*index.shape, *([1] * (t.dim() - 2))).expand(*index.shape, *t.shape[2:])
    return t.gather(1, idx)


def _ends(top_ids: Tensor, V: int, last: bool, eos_token_id: int | None) -> Tensor:
    """Which candidates ``top_ids`` (N, 2K) (flat ids into K*V) end the hypothesis: all of them on
    the ``last`` step, those choosing ``eos_token_id`` otherwise (none without one)."""
    tok = top_ids % V
    if last:
        return torch.ones_like(tok, dtype=torch.bool)
    if eos_token_id is not None:
        return tok == eos_token_id
    return torch.zeros_like(tok, dtype=torch.bool)


class _Beams:
    """The running and finished hypotheses of N independent beam problems of K beams each.

    ``seqs`` (N, K, L): the running hypotheses (prompt + generated, L = P + budget) and
    ``run_scores`` (N, K) their log-prob sums; ``fin_seqs``, ``fin_scores`` (length-penalised),
    ``fin_done``, ``fin_len`` (N, K): the best finished ones; ``improvable`` (N, 1): whether a
    running beam can still beat the worst finished one."""

    def __init__(self, seqs: Tensor, P: int, length_penalty: float, early_stopping):
        N, K, _ = seqs.shape
        device = seqs.device
        self.seqs, self.P, self.lp, self.early = seqs, P, float(length_penalty), early_stopping
        self.run_scores = torch.zeros(N, K, device=device)
        self.run_scores[:, 1:] = -BIG  # all beams start equal: only the first may expand at step one
        self.fin_seqs = seqs.clone()
        self.fin_scores = torch.full((N, K), -BIG, device=device)
        self.fin_done = torch.zeros(N, K, dtype=torch.bool, device=device)
        self.fin_len = torch.zeros(N, K, dtype=torch.long, device=device)
        self.improvable = torch.ones(N, 1, dtype=torch.bool, device=device)
        self.top_mask = torch.arange(2 * K, device=device) < K  # only the first K candidates may finish
        self.hits = None

    def processed_logp(self, logits: Tensor, processors, cur: int) -> Tensor:
        """Log-probs (N*K, V) of ``logits`` after the processors, which read each hypothesis's
        history so far (prompt + ``cur`` tokens)."""
        N, K, L = self.seqs.shape
        logp = torch.log_softmax(logits.float(), -1)  # (N*K, V)
        for proc in processors:
            logp = proc(self.seqs.view(N * K, L)[:, : self.P + cur], logp)
        return logp

    def step(self, top_scores: Tensor, beam: Tensor, tok: Tensor, hits: Tensor, cur: int) -> Tensor:
        """One step from the 2K candidates (N, 2K): ``top_scores``, the ``beam`` each extends, its
        token ``tok`` and whether it ends (``hits``). The best K that do not end go on; those that
        end may join the finished. Returns the parent beam (N, K) of each survivor."""
        K = self.seqs.size(1)
        alive = top_scores - hits.float() * BIG
        keep = torch.topk(alive, K, dim=-1).indices  # (N, K)
        self.run_scores = alive.gather(1, keep)
        parent = beam.gather(1, keep)  # (N, K) beam each survivor extends
        just = hits & self.top_mask
        if bool(just.any()):
            self._finish(top_scores, beam, tok, just, cur)
        self.seqs = _gather(self.seqs, parent)  # (N, K, L): the survivors' histories ...
        self.seqs[:, :, self.P + cur] = tok.gather(1, keep)  # ... and their new tokens
        self.hits = hits
        return parent

    def _finish(self, top_scores: Tensor, beam: Tensor, tok: Tensor, just: Tensor, cur: int) -> None:
        """Candidates that end (``just``) become finished hypotheses when they beat the kept ones
        (the finished set, a copy of whole sequences, is only rebuilt on a step where one ends)."""
        K = self.seqs.size(1)
        cand = _gather(self.seqs, beam)  # (N, 2K, L)
        cand[:, :, self.P + cur] = tok
        final = top_scores / float(cur + 1) ** self.lp
        full = self.fin_done.all(-1, keepdim=True) & (self.early is True)
        final = final - full.float() * BIG - (~self.improvable).float() * BIG - (~just).float() * BIG
        m_scores = torch.cat([self.fin_scores, final], 1)  # (N, 3K)
        best = torch.topk(m_scores, K, dim=-1).indices
        self.fin_seqs = _gather(torch.cat([self.fin_seqs, cand], 1), best)
        self.fin_scores = m_scores.gather(1, best)
        self.fin_done = torch.cat([self.fin_done, just], 1).gather(1, best)
        self.fin_len = torch.cat([self.fin_len, torch.full_like(tok, cur + 1)], 1).gather(1, best)

    def over(self, cur: int, max_new_tokens: int) -> bool:
        """After step ``cur``: whether the search is over (no running beam can still beat the
        worst finished hypothesis, every problem is full under early_stopping=true, or every
        candidate ended)."""
        best_len = max_new_tokens if (self.early == "never" and self.lp > 0) else cur + 1
        best_possible = self.run_scores[:, :1] / float(best_len) ** self.lp
        worst = torch.where(self.fin_done, self.fin_scores.min(-1, keepdim=True).values,
                            torch.full_like(self.fin_scores, -BIG))
        self.improvable = self.improvable & (best_possible > worst).any(-1, keepdim=True)
        return (not bool(self.improvable.any()) or (bool(self.fin_done.all()) and self.early is True)
                or bool(self.hits.all()))


def _check_enough(returned: Tensor, lens: Tensor, length_penalty: float, R: int) -> None:
    """Refuse, in one line, a search that would return a placeholder. ``returned`` (B, R): the
    length-penalised scores of the hypotheses about to be returned, ``lens`` (B, R) their lengths.
    A placeholder (no hypothesis ever finished there, or one carrying the ``-BIG`` start penalty of
    an unused beam, or ``-inf`` from a token every processor excluded) is returned where fewer than
    ``R`` real hypotheses exist: a small vocabulary, a short budget, a filter such as ``top_k=1``.
    transformers returns those rows, repeating earlier sequences with a score near -1e9; here they
    are refused."""
    raw = returned * lens.clamp(min=1).float() ** float(length_penalty)  # back to log-prob sums
    real = (lens > 0) & (raw > -BIG / 2)  # (B, R)
    if bool(real.all()):
        return
    b = int((~real.all(-1)).nonzero()[0])
    raise ValueError(f"decoding.num_return_sequences={R}, but prompt {b} has only {int(real[b].sum())} distinct "
                     f"hypotheses (at most {int(lens.max())} new tokens, given the vocabulary and the decoding's "
                     f"filters): lower decoding.num_return_sequences (and decoding.num_beams), or raise max_new_tokens.")


class BeamSearch(DecodingStrategy):
    """Beam search: ``num_beams`` hypotheses per prompt; returns the ``num_return_sequences`` best."""

    OWN = {"num_beams": 4, "length_penalty": 1.0, "early_stopping": False, "num_return_sequences": 1}
    streams = False
    scores_are_logprob_sums = False  # beam scores: log-prob sums divided by length ** length_penalty

    @classmethod
    def name(cls):
        return "beam"

    def check(self) -> None:
        s = self.settings
        if not isinstance(s["num_beams"], int) or s["num_beams"] < 1:
            raise ValueError(f"decoding.num_beams must be an int >= 1, got {s['num_beams']!r}")
        if not isinstance(s["num_return_sequences"], int) or not 1 <= s["num_return_sequences"] <= s["num_beams"]:
            raise ValueError(f"decoding.num_return_sequences ({s['num_return_sequences']}) must be between 1 and "
                             f"decoding.num_beams ({s['num_beams']}): raise num_beams or lower num_return_sequences.")
        if s["early_stopping"] not in (True, False, "never"):
            raise ValueError(f"decoding.early_stopping must be true, false or never, got {s['early_stopping']!r}")

    @property
    def num_groups(self) -> int:
        return 1

    # -- candidate selection: the part the variants change ------------------------------------
    def candidates(self, logp: Tensor, run_scores: Tensor, generator) -> tuple[Tensor, Tensor]:
        """logp (N, K, V) processed log-probs, run_scores (N, K) ->
        the 2K best continuations per problem: scores (N, 2K) (descending) and flat ids (N, 2K) into K*V."""
        acc = (logp + run_scores[..., None]).flatten(1)  # (N, K*V)
        return torch.topk(acc, 2 * logp.size(1), dim=-1)

    # -- the search ---------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, model, prompts: Sequence[Sequence[int]], max_new_tokens: int = 100,
                 eos_token_id: int | None = None, bos_token_id: int = 0, streamer=None,
                 generator: torch.Generator | None = None, tokenizer=None, stop_strings: Sequence[str] = (),
                 max_time: float | None = None) -> GenerationResult:
        """Up to ``max_new_tokens`` tokens per hypothesis, ``num_beams`` hypotheses per prompt; the
        ``num_return_sequences`` best per prompt, in prompt order. Raises ValueError for
        ``stop_strings`` (beam search cannot stop on them)."""
        s = self.settings
        if stop_strings:
            raise ValueError("stop_strings are not supported with beam search; use eos_token instead.")
        stopping = StoppingCriteria(eos_token_id, (), None, max_time)
        G = self.num_groups
        K = s["num_beams"] // G  # beams per group
        B = len(prompts)
        N = B * G  # independent beam problems
        logits, state = prefill(model, prompts, bos_token_id)
        V, device = logits.size(-1), logits.device
        hist = prompt_history(prompts, max_new_tokens, V, device)  # (B, L)
        P = hist.size(1) - max_new_tokens
        processors = self._setup(self.processors(), P, max_new_tokens, eos_token_id)
        rows = torch.arange(B, device=device).repeat_interleave(G * K)  # (N*K,): prompt of each hypothesis
        state = model.reorder_state(state, rows)
        logits = logits.index_select(0, rows)
        beams = _Beams(hist.index_select(0, rows).view(N, K, -1), P, s["length_penalty"], s["early_stopping"])
        offsets = torch.arange(N, device=device)[:, None] * K  # (N, 1): first row of each problem
        for cur in range(max_new_tokens):
            logp = beams.processed_logp(logits, processors, cur)
            top_scores, top_ids = self.candidates(logp.view(N, K, V), beams.run_scores, generator)  # (N, 2K)
            last = cur + 1 == max_new_tokens or stopping.timed_out()
            parent = beams.step(top_scores, top_ids // V, top_ids % V, _ends(top_ids, V, last, eos_token_id), cur)
            if last or beams.over(cur, max_new_tokens):
                break
            state = model.reorder_state(state, (offsets + parent).flatten())
            logits, state = model.step(beams.seqs[:, :, P + cur].flatten(), state)
        return self._results(B, G, K, P, beams.fin_seqs, beams.fin_scores, beams.fin_len)

    def _results(self, B, G, K, P, fin_seqs, fin_scores, fin_len) -> GenerationResult:
        R = self.settings["num_return_sequences"]
        scores = fin_scores.view(B, G * K)
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :R]  # groups merged
        seqs = _gather(fin_seqs.view(B, G * K, -1), order)
        lens = fin_len.view(B, G * K).gather(1, order)
        _check_enough(scores.gather(1, order), lens, self.settings["length_penalty"], R)
        out, out_scores = [], []
        for b in range(B):
            for r in range(R):
                out.append(seqs[b, r, P: P + int(lens[b, r])].tolist())
                out_scores.append(float(scores[b, order[b, r]]))
        return GenerationResult(out, out_scores)


class BeamSample(BeamSearch):
    """Beam sampling: the 2K continuations of each prompt are *drawn* (without replacement) from the
    processed distribution over all beams x tokens instead of taken as the best; sampling settings
    (temperature, top_k, top_p, ...) shape that distribution."""

    SAMPLES = True

    @classmethod
    def name(cls):
        return "beam_sample"

    def candidates(self, logp, run_scores, generator):
        acc = (logp + run_scores[..., None]).flatten(1)  # (N, K*V)
        # Gumbel-top-k: the top 2K of log-prob + Gumbel noise is a draw without replacement
        u = torch.rand(acc.shape, generator=generator, device=acc.device).clamp_(min=1e-20)
        ids = torch.topk(acc - torch.log(-torch.log(u)), 2 * logp.size(1), dim=-1).indices
        picked = acc.gather(1, ids)
        picked, order = picked.sort(-1, descending=True)
        return picked, ids.gather(1, order)


class DiverseBeamSearch(BeamSearch):
    """Diverse (group) beam search: ``num_beam_groups`` groups of ``num_beams / num_beam_groups``
    beams; within one step each group pays ``diversity_penalty`` per earlier group that chose the
    same token, so the groups explore different continuations."""

    OWN = {**BeamSearch.OWN, "num_beam_groups": 2, "diversity_penalty": 0.5}

    @classmethod
    def name(cls):
        return "diverse_beam"

    def check(self) -> None:
        super().check()
        s = self.settings
        g = s["num_beam_groups"]
        if not isinstance(g, int) or g < 1 or s["num_beams"] % g:
            raise ValueError(f"decoding.num_beam_groups ({g}) must be an int >= 1 that divides "
                             f"decoding.num_beams ({s['num_beams']}).")
        if s["diversity_penalty"] < 0:
            raise ValueError(f"decoding.diversity_penalty must be >= 0, got {s['diversity_penalty']}")

    @property
    def num_groups(self) -> int:
        return self.settings["num_beam_groups"]

    def candidates(self, logp, run_scores, generator):
        G = self.num_groups
        NG, K, V = logp.shape
        B = NG // G
        logp, run_scores = logp.view(B, G, K, V), run_scores.view(B, G, K)
        chosen = torch.zeros(B, V, device=logp.device)  # (B, V): tokens taken by earlier groups this step
        all_scores, all_ids = [], []
        for g in range(G):  # a loop over the few groups, never over hypotheses
            acc = (logp[:, g] - self.settings["diversity_penalty"] * chosen[:, None, :]
                   + run_scores[:, g, :, None]).flatten(1)  # (B, K*V)
            sc, ids = torch.topk(acc, 2 * K, dim=-1)
            all_scores.append(sc)
            all_ids.append(ids)
            # the tokens this group goes on with (its best K candidates; ended ones count too)
            chosen.scatter_add_(1, ids[:, :K] % V, torch.ones(B, K, device=logp.device))
        return torch.stack(all_scores, 1).flatten(0, 1), torch.stack(all_ids, 1).flatten(0, 1)
