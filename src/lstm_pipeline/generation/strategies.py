"""Decoding strategies (registered under ``lstm_pipeline.decoders``).

A strategy drives ``model.step(tokens, state)``: the prompt is consumed once (``prefill``), then one
token at a time with the recurrent state carried; nothing is ever re-run. All sampling strategies
are one loop plus a list of logits processors (nucleus = sampling + top-p, typical = sampling +
typical filtering, ...). Many prompts of different lengths run as one batch.

Every strategy takes the constraint settings (``COMMON``: repetition_penalty, frequency_penalty,
presence_penalty, no_repeat_ngram_size, bad_words_ids, min_new_tokens, forced_end) and
``processors`` (any registered logits processor by name, plugins' included: see processors.py);
sampling strategies also take every sampling setting (``SAMPLING``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..registry import check_settings
from .processors import NEG_INF, OFF, LogitsProcessor, build_processors, setup_processor
from .stopping import StoppingCriteria

#: settings every strategy accepts (processor constraints), with their off values
COMMON: dict[str, Any] = {**{k: OFF[k] for k in ("repetition_penalty", "frequency_penalty", "presence_penalty",
                                                  "no_repeat_ngram_size", "bad_words_ids", "min_new_tokens", "forced_end")},
                          "processors": None}  # any registered processor by name (processors.py)
#: settings of the sampling processors, with their off values
SAMPLING: dict[str, Any] = {k: v for k, v in OFF.items() if k not in COMMON}


@dataclass
class GenerationResult:
    sequences: list[list[int]]            # generated ids per row (prompt excluded; eos kept)
    scores: list[float] = field(default_factory=list)  # per row: sum of model log-probs of its ids
    # (beam search: the length-penalised beam score, as Hugging Face's ``sequences_scores``)


def sample_from_logits(logits: Tensor, generator: torch.Generator | None = None, u: Tensor | None = None) -> Tensor:
    """Draw one token per row: inverse CDF (cumsum + searchsorted), far faster than
    ``torch.multinomial`` on the CPU and the same distribution. logits (B, V) -> (B,) long.

    ``u``: the uniform numbers in [0, 1), (B, 1), drawn by the caller instead of from ``generator``
    (``torch.rand(B, 1, generator=generator)`` gives the same tokens). A batch whose rows belong to
    different requests (``lstm-pipeline serve``) draws each request's rows from the request's own
    generator, so each gets the tokens it would get alone.

    A row with ``+inf`` logits (a plugin processor's overflow) draws among those tokens only, the
    limit of that distribution, never the last id that NaN probabilities would give."""
    logits = logits.float()
    top = torch.isposinf(logits)
    if bool(top.any()):
        logits = torch.where(top.any(-1, keepdim=True), torch.where(top, 0.0, NEG_INF), logits)
    probs = torch.softmax(logits, dim=-1)
    cdf = probs.cumsum_(-1)  # (B, V)
    if u is None:
        u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device)
    elif u.shape != (cdf.size(0), 1):
        raise ValueError(f"u must have shape ({cdf.size(0)}, 1) for logits of shape {tuple(logits.shape)}, "
                         f"got {tuple(u.shape)}")
    u = u.to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


@torch.no_grad()
def prefill(model, prompts: Sequence[Sequence[int]], bos_token_id: int) -> tuple[Tensor, tuple]:
    """Consume the prompts once; return the logits after each prompt's last token and the state.
    An empty prompt starts from the start-of-text state: the state after ``bos_token_id``."""
    rows = [list(p) if len(p) else [bos_token_id] for p in prompts]
    device = next(model.parameters()).device
    lengths = {len(r) for r in rows}
    if len(lengths) == 1:  # one fused call over the whole prompt
        return model.prefill(torch.tensor(rows, device=device))  # only the last position's logits
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
        state = tuple(_where_rows(live, n, o, d) for n, o, d in zip(new_state, state, model.state_batch_dims(state)))
        last = logits if last is None else torch.where(live[:, None], logits, last)
    return last, state


def _where_rows(mask: Tensor, new: Tensor, old: Tensor, batch_dim: int) -> Tensor:
    shape = [1] * new.dim()
    shape[batch_dim] = -1
    return torch.where(mask.view(shape), new, old)


def prompt_history(prompts: Sequence[Sequence[int]], extra: int, pad_id: int, device=None) -> Tensor:
    """A (B, P + extra) token buffer holding the prompts left-padded with ``pad_id`` (P = longest)."""
    P = max((len(p) for p in prompts), default=0)
    buf = torch.full((len(prompts), P + extra), pad_id, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        if len(p):
            buf[b, P - len(p): P] = torch.as_tensor(list(p), dtype=torch.long)
    return buf


class DecodingStrategy:
    """Base of every strategy: keeps the settings, checks them, builds the processors.

    A plugin decoder usually subclasses :class:`StepDecoding` (the token-by-token loop) and writes
    ``select(scores, generator)``; its own ``__init__`` may take just its own settings without calling
    this one, and then runs with no logits processors. A strategy with its own search (beam-like)
    subclasses this class and writes ``generate``."""

    lstm_pipeline_api = "1"
    #: the strategy's own settings and their defaults (subclasses extend)
    OWN: dict[str, Any] = {}
    #: whether the sampling settings apply
    SAMPLES = False
    #: whether ``generate`` can stream row 0 as it is produced (beam search cannot: beams change)
    streams = True
    #: ``GenerationResult.scores`` are the sums of the model's log-probabilities of the generated ids
    scores_are_logprob_sums = True
    #: decoding setting -> value (set by ``__init__``); empty means no logits processors
    settings: dict[str, Any] = {}

    def __init__(self, **settings):
        allowed = {**COMMON, **(SAMPLING if self.SAMPLES else {}), **self.OWN}
        check_settings(settings, list(allowed), f"decoding '{self.name()}'")
        self.settings = {**allowed, **settings}
        self.check()
        # every processor setting is checked now, not mid-generation; the processors built for the
        # check are the first ``generate`` call's (see :meth:`processors`): one build per decoder
        built = self.processors()
        if type(self).processors is DecodingStrategy.processors:  # (an override may extend the list)
            self._unused_processors = (dict(self.settings), built)

    @classmethod
    def name(cls) -> str:
        return cls.__name__.lower()

    def check(self) -> None:
        """Cross-setting checks (subclasses)."""

    def processors(self) -> list[LogitsProcessor]:
        """Fresh processors for one ``generate`` call, in ``PROCESSOR_ORDER``. The strategy's own
        settings are not processor settings, even where a name is shared (contrastive's ``top_k`` is
        its candidate count, not a filter). The first call after ``__init__`` returns the processors
        ``__init__`` built to check the settings (unused until then, so fresh; unless the settings
        changed since); later calls build anew. Raises ValueError naming the decoder and the bad setting."""
        unused = self.__dict__.pop("_unused_processors", None)
        if unused is not None and unused[0] == self.settings:
            return unused[1]
        try:
            return build_processors({k: v for k, v in self.settings.items() if k not in self.OWN})
        except ValueError as exc:
            raise ValueError(f"decoding '{self.name()}': {exc}") from None

    def _setup(self, processors, prompt_length, max_new_tokens, eos_token_id):
        for p in processors:
            setup_processor(p, prompt_length, max_new_tokens, eos_token_id)
        return processors


class Rows:
    """Per-row bookkeeping of the token-by-token strategies (``StepDecoding``, contrastive search):
    the history buffer (prompts left-padded, then the generated ids), scores (model log-probs of the
    generated ids), which rows finished and at what length, streaming of row 0, and stopping."""

    def __init__(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, vocab_size: int, device,
                 stopping: StoppingCriteria, eos_token_id: int | None, streamer=None):
        B = len(prompts)
        self.history = prompt_history(prompts, max_new_tokens, vocab_size, device)  # (B, P + N)
        self.P = self.history.size(1) - max_new_tokens
        self.stopping, self.streamer = stopping, streamer
        self.scores = torch.zeros(B, dtype=torch.float64, device=device)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
        self.fill = eos_token_id if eos_token_id is not None else 0
        self.check_rows = eos_token_id is not None or bool(stopping.stop_strings)

    def seen(self, n: int) -> Tensor:
        """The prompt plus the first ``n`` generated ids: (B, P + n)."""
        return self.history[:, : self.P + n]

    def record(self, n: int, nxt: Tensor, logits: Tensor) -> tuple[Tensor, bool]:
        """Write generated token ``n`` (nxt (B,), chosen from the model's logits (B, V)); return the
        ids as written (finished rows padded) and whether generation stops here."""
        logp = logits.float().log_softmax(-1).gather(1, nxt[:, None]).squeeze(1)  # (B,)
        if self.check_rows:
            nxt = nxt.masked_fill(self.finished, self.fill)
            logp = logp.masked_fill(self.finished, 0.0)
        self.scores += logp
        self.history[:, self.P + n] = nxt
        if self.streamer is not None and not bool(self.finished[0]):
            self.streamer.put(int(nxt[0]))
        if self.check_rows:
            done = self.stopping(self.history[:, self.P: self.P + n + 1], self.finished) & ~self.finished
            self.lengths = torch.where(done, n + 1, self.lengths)
            self.finished |= done
            if bool(self.finished.all()):
                return nxt, True
        if self.stopping.timed_out():
            self.lengths = torch.where(self.finished, self.lengths, n + 1)
            return nxt, True
        return nxt, False

    def result(self) -> GenerationResult:
        if self.streamer is not None:
            self.streamer.end()
        generated = self.history[:, self.P:].tolist()
        sequences = [row[:length] for row, length in zip(generated, self.lengths.tolist())]
        return GenerationResult(sequences, self.scores.tolist())


class StepDecoding(DecodingStrategy):
    """One loop for greedy and every sampling strategy: process the logits, select a token per row."""

    def select(self, scores: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def generate(self, model, prompts: Sequence[Sequence[int]], max_new_tokens: int = 100,
                 eos_token_id: int | None = None, bos_token_id: int = 0, streamer=None,
                 generator: torch.Generator | None = None, tokenizer=None, stop_strings: Sequence[str] = (),
                 max_time: float | None = None) -> GenerationResult:
        stopping = StoppingCriteria(eos_token_id, stop_strings, tokenizer, max_time)
        logits, state = prefill(model, prompts, bos_token_id)
        rows = Rows(prompts, max_new_tokens, logits.size(1), logits.device, stopping, eos_token_id, streamer)
        processors = self._setup(self.processors(), rows.P, max_new_tokens, eos_token_id)
        for n in range(max_new_tokens):
            processed = logits.float()
            for proc in processors:
                processed = proc(rows.seen(n), processed)
            nxt, stop = rows.record(n, self.select(processed, generator), logits)
            if stop:
                break
            if n + 1 < max_new_tokens:
                logits, state = model.step(nxt, state)
        return rows.result()


class Greedy(StepDecoding):
    """Always the most likely next token (after the constraint processors)."""

    def select(self, scores, generator):
        return scores.argmax(-1)


class Sample(StepDecoding):
    """Ancestral sampling with temperature; every sampling filter is available as a setting."""

    SAMPLES = True
    DEFAULTS: dict[str, Any] = {}

    def __init__(self, **settings):
        super().__init__(**{**self.DEFAULTS, **settings})

    def select(self, scores, generator):
        return sample_from_logits(scores, generator)


class TopKSampling(Sample):
    """Sampling from the ``top_k`` most likely tokens."""

    DEFAULTS = {"top_k": 50}

    @classmethod
    def name(cls):
        return "top_k"


class Nucleus(Sample):
    """Nucleus (top-p) sampling: the smallest set of tokens holding ``top_p`` of the mass."""

    DEFAULTS = {"top_p": 0.9}


class TypicalSampling(Sample):
    """Locally typical sampling (``typical_p``)."""

    DEFAULTS = {"typical_p": 0.9}

    @classmethod
    def name(cls):
        return "typical"


class MinPSampling(Sample):
    """Min-p sampling: tokens at least ``min_p`` times as likely as the best one."""

    DEFAULTS = {"min_p": 0.1}

    @classmethod
    def name(cls):
        return "min_p"


class EpsilonSampling(Sample):
    """Epsilon sampling: tokens with probability at least ``epsilon``."""

    DEFAULTS = {"epsilon": 3e-4}

    @classmethod
    def name(cls):
        return "epsilon"


class EtaSampling(Sample):
    """Eta sampling: an entropy-dependent probability cut-off (``eta``)."""

    DEFAULTS = {"eta": 3e-4}

    @classmethod
    def name(cls):
        return "eta"
