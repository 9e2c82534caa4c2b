"""Logits processors: ``(history (B, t) long, logits (B, V) float) -> logits (B, V)``.

Registered under ``lstm_pipeline.logits_processors``; they compose in a list and the built-in
strategies apply them in one fixed order, ``PROCESSOR_ORDER``:

1. constraints on the raw scores: repetition penalty, frequency/presence penalties,
   no-repeat-n-gram, bad words, min new tokens, forced end;
2. then the shape of the distribution: temperature, top-k, top-p, typical, min-p, epsilon, eta.

Constraints come first so that a filter (say top-k = 1) can never keep only a banned token; this is
also the order Hugging Face ``generate`` uses, so a combination gives the same distribution there.

Any registered processor (a plugin's too) is switched on by name with the decoding setting
``processors``: a list of names, or a mapping name -> its settings, e.g. from the command line
``decoding.processors={top_a: {top_a: 0.2}}`` or from Python
``DECODERS.build({"name": "sample", "processors": {"top_a": {"top_a": 0.2}}})``. Where it goes in the
order: a built-in name at its place above; any other processor after the built-in constraints if
its class says ``stage = "constraint"``, else (the default, ``stage = "filter"``) after the built-in
filters, in the order given. The full order is therefore: built-in constraints, named constraint
processors, temperature, built-in filters, named filter processors.

``history`` holds the prompt and the tokens generated so far. Ragged prompts are left-padded with
``pad id = V`` (one past the vocabulary), which every processor ignores. Processors that need to know
where the prompt ends, the end-of-sequence token or the token budget get them through ``setup``.
Filtering processors set excluded logits to ``-inf`` and always keep at least ``min_tokens_to_keep``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

NEG_INF = float("-inf")


class LogitsProcessor:
    """Base class of processors (optional: any callable ``(history, logits) -> logits`` class works)."""

    lstm_pipeline_api = "1"
    #: where a processor switched on by name (the ``processors`` setting) runs: "constraint" (on the
    #: raw scores, after the built-in constraints) or "filter" (after temperature and the built-in filters)
    stage = "filter"

    def setup(self, *, prompt_length: int, max_new_tokens: int, eos_token_id: int | None) -> None:
        """Optional hook, called once per ``generate`` call before the first token (prompt_length =
        the padded width of the prompts in ``history``). A processor without it works as well."""

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _check_keep(min_tokens_to_keep: int) -> None:
    if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        raise ValueError(f"min_tokens_to_keep must be an int >= 1, got {min_tokens_to_keep!r}")


def _protect_top(remove: Tensor, logits: Tensor, k: int) -> Tensor:
    """Never remove the k most likely tokens. remove (B, V) bool."""
    k = min(k, logits.size(-1))
    if k == 1:
        return remove.scatter(-1, logits.argmax(-1, keepdim=True), False)
    return remove.scatter(-1, torch.topk(logits, k, dim=-1).indices, False)


def token_counts(history: Tensor, vocab_size: int) -> Tensor:
    """How often each token occurs in each row: history (B, t) -> (B, V) float; pad ids (>= V) ignored."""
    counts = torch.zeros(history.size(0), vocab_size + 1, device=history.device)
    if history.numel():
        counts.scatter_add_(1, history.clamp(max=vocab_size), torch.ones_like(history, dtype=counts.dtype))
    return counts[:, :vocab_size]


# -- distribution shape ------------------------------------------------------------------
class Temperature(LogitsProcessor):
    """Divide the logits by ``temperature`` (< 1 sharpens, > 1 flattens), as transformers'
    ``TemperatureLogitsWarper``. Where that division overflows (a tiny temperature such as 1e-40,
    or a small one in float16), the row's largest logit is subtracted first: the same distribution
    (softmax ignores a constant), but finite, so a temperature near 0 samples what greedy picks
    (transformers gives ``inf`` logits and NaN probabilities there)."""

    def __init__(self, temperature: float = 1.0):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {temperature}); for deterministic output use decoding=greedy.")
        self.temperature = float(temperature)

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.temperature == 1.0:
            return logits
        out = logits / self.temperature
        # inf, or NaN where a temperature below the dtype's smallest number became 0
        overflow = (~torch.isfinite(out) & torch.isfinite(logits)).any(-1)  # (B,)
        if bool(overflow.any()):  # in float64, where any positive Python float is not 0
            safe = (shifted(logits).double() / self.temperature).to(logits.dtype)
            return torch.where(overflow[:, None], safe, out)
        return out


def shifted(logits: Tensor) -> Tensor:
    """``logits`` (B, V) minus each row's largest finite value (0 where a row has none): the same
    softmax, with the largest logit 0, so scaling it up cannot overflow."""
    finite = torch.where(torch.isfinite(logits), logits, torch.full_like(logits, NEG_INF))
    top = finite.amax(-1, keepdim=True)
    return logits - torch.where(torch.isfinite(top), top, torch.zeros_like(top))


class TopK(LogitsProcessor):
    """Keep the ``top_k`` most likely tokens (0 = off)."""

    def __init__(self, top_k: int = 0, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {top_k!r}")
        _check_keep(min_tokens_to_keep)
        self.top_k = max(top_k, min_tokens_to_keep) if top_k else 0

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.top_k <= 0 or self.top_k >= logits.size(-1):
            return logits
        kth = torch.topk(logits, self.top_k, dim=-1).values[:, -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, NEG_INF)


class TopP(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of most likely tokens whose mass reaches ``top_p``.

    Sorting a (B, V) row set is the slow part (64 x 10k: ~20 ms on this 2-core CPU). The fast path
    sorts almost nothing. Probabilities are non-negative, so their float32 bit patterns order like
    the values; the top 11 bits (exponent and 3 mantissa bits) bucket each row into 2048 bands whose
    masses one ``scatter_add`` gives. The band where the running mass (most likely first) crosses
    ``top_p`` is the only one that needs sorting: every band above it is kept whole and every band
    below it dropped. Rows whose boundary band holds a quarter of the vocabulary (near-uniform
    rows) take the plain full sort.

    The decision ``mass of the more likely tokens < top_p`` is made in float64; transformers makes
    it in float32 over the ascending cumulative sum, so a token whose mass sits within float32
    rounding (~1e-7) of the cut can fall on the other side (the test compares on random rows)."""

    BUCKET_SHIFT = 20  # 31 - 20 = 11 bits: 8 exponent + 3 mantissa

    def __init__(self, top_p: float = 1.0, min_tokens_to_keep: int = 1):
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        _check_keep(min_tokens_to_keep)
        self.top_p, self.min_tokens_to_keep = float(top_p), min_tokens_to_keep
        self._k = 256  # top-k size the small-batch path starts from: the last one that covered top_p

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.top_p >= 1.0:
            return logits
        if logits.dtype == torch.float32 and logits.size(-1) >= 1024:
            out = self._most_likely_first(logits) if logits.size(0) <= 8 else self._candidates_only(logits)
            if out is not None:
                return out
        return self._full_sort(logits)

    def _most_likely_first(self, logits: Tensor) -> Tensor | None:
        """A few rows (batch-1 generation): ``topk`` of the k most likely tokens (k = 256, 1024,
        4096, starting from the k the call before needed), enough once they hold ``top_p`` of every
        row's mass; ~10 small ops against ~25 for the band path, whose cost is per op at this size
        (batch 1, 10k vocabulary: 0.28 -> 0.07 ms). None when no k up to V / 4 covers."""
        V = logits.size(-1)
        probs = logits.softmax(-1)
        k = min(self._k, V)  # the k the step before needed: nuclei change slowly
        while True:
            top, idx = probs.topk(k, dim=-1)  # (B, k), most likely first
            cum = top.cumsum(-1)
            if bool((cum[:, -1] >= self.top_p).all()):
                break
            if 4 * k > V // 4:
                return None
            k *= 4
        keep = (cum - top) < self.top_p  # mass of the more likely tokens
        keep[:, : self.min_tokens_to_keep] = True
        self._k = k // 4 if k > 256 and int(keep.sum(-1).max()) * 16 < k else k
        out = torch.full_like(logits, NEG_INF)
        return out.scatter_(-1, idx, logits.gather(-1, idx).masked_fill_(~keep, NEG_INF))

    def _full_sort(self, logits: Tensor) -> Tensor:
        asc, order = torch.sort(logits, dim=-1)  # (B, V), least likely first
        cum = asc.softmax(-1).cumsum_(-1)  # mass of this token and every less likely one
        remove = cum <= 1 - self.top_p  # the tail holding at most 1 - top_p of the mass
        remove[:, -self.min_tokens_to_keep:] = False
        return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)

    def _candidates_only(self, logits: Tensor) -> Tensor | None:
        B, V = logits.shape
        nb = 1 << (31 - self.BUCKET_SHIFT)
        probs = logits.softmax(-1)  # (B, V)
        band = probs.view(torch.int32) >> self.BUCKET_SHIFT  # (B, V) in [0, nb): monotone in p
        mass = torch.zeros(B, nb + 1, dtype=torch.float64, device=logits.device)
        mass.scatter_add_(1, band.long(), probs.double())
        above = mass.flip(-1).cumsum_(-1).flip(-1)  # above[b, k]: mass of the bands >= k (above[:, nb] = 0)
        cut = ((above[:, :nb] >= self.top_p).sum(-1, keepdim=True) - 1).clamp_(min=0)  # (B, 1) boundary band
        mass_above = above.gather(1, cut + 1)  # (B, 1) mass of the bands kept whole
        cut32 = cut.to(torch.int32)
        flat = (band == cut32).view(-1).nonzero().squeeze(1)  # the boundary band's tokens, row-major
        if flat.numel() > B * V // 4:
            return None  # near-uniform rows: sorting everything is as cheap
        rows = flat // V
        pb = probs.view(-1)[flat]
        # sort by row, then most likely first: one int64 key (row, inverted bit pattern)
        order = torch.sort((rows << 31) | (0x7FFFFFFF - pb.view(torch.int32)).long()).indices
        flat, rows, pb = flat[order], rows[order], pb[order].double()
        counts = torch.bincount(rows, minlength=B)  # (B,) boundary tokens per row
        starts = counts.cumsum(0) - counts
        cum = pb.cumsum(0)
        first = cum.new_zeros(B)  # mass of the earlier rows' boundary tokens, at each row start
        first[1:] = cum[(starts[1:] - 1).clamp_(min=0)]
        first[1:].masked_fill_(starts[1:] == 0, 0.0)
        before = mass_above.view(-1)[rows] + (cum - pb) - first[rows]  # mass of the more likely tokens
        drop = before >= self.top_p
        if self.min_tokens_to_keep > 1:
            n_above = (band > cut32).sum(-1)  # (B,) tokens in the bands kept whole
            if bool((n_above + counts < self.min_tokens_to_keep).any()):
                return None  # the kept minimum reaches below the boundary band
            rank = n_above[rows] + torch.arange(rows.numel(), device=logits.device) - starts[rows]
            drop &= rank >= self.min_tokens_to_keep
        out = logits.masked_fill(band < cut32, NEG_INF)
        out.view(-1)[flat[drop]] = NEG_INF
        return out


class Typical(LogitsProcessor):
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy, up to ``typical_p``."""

    def __init__(self, typical_p: float = 1.0, min_tokens_to_keep: int = 1):
        if not 0 < typical_p <= 1:
            raise ValueError(f"typical_p must be in (0, 1], got {typical_p}")
        _check_keep(min_tokens_to_keep)
        self.typical_p, self.min_tokens_to_keep = float(typical_p), min_tokens_to_keep

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.typical_p >= 1.0:
            return logits
        logp = logits.log_softmax(-1)  # (B, V)
        entropy = -(logp.exp() * logp).nansum(-1, keepdim=True)  # (B, 1)
        distance = (-logp - entropy).abs()  # how far each surprisal is from the entropy
        dist_sorted, order = torch.sort(distance, dim=-1)
        cum = logits.gather(-1, order).softmax(-1).cumsum(-1)
        # the cut: the first position where the mass reaches typical_p (ties at the cut distance kept)
        last = (cum < self.typical_p).sum(-1, keepdim=True).clamp_(max=logits.size(-1) - 1)  # (B, 1)
        remove = dist_sorted > dist_sorted.gather(-1, last)
        remove[:, : self.min_tokens_to_keep] = False
        return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)


class MinP(LogitsProcessor):
    """Keep tokens whose probability is at least ``min_p`` times that of the most likely token (0 = off)."""

    def __init__(self, min_p: float = 0.0, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        _check_keep(min_tokens_to_keep)
        self.min_p, self.min_tokens_to_keep = float(min_p), min_tokens_to_keep

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.min_p <= 0:
            return logits
        probs = logits.softmax(-1)
        remove = probs < self.min_p * probs.amax(-1, keepdim=True)
        return logits.masked_fill(_protect_top(remove, logits, self.min_tokens_to_keep), NEG_INF)


class Epsilon(LogitsProcessor):
    """Epsilon sampling: drop tokens whose probability is below ``epsilon`` (0 = off)."""

    def __init__(self, epsilon: float = 0.0, min_tokens_to_keep: int = 1):
        if not 0 <= epsilon < 1:
            raise ValueError(f"epsilon must be in [0, 1) (0 = off), got {epsilon}")
        _check_keep(min_tokens_to_keep)
        self.epsilon, self.min_tokens_to_keep = float(epsilon), min_tokens_to_keep

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.epsilon <= 0:
            return logits
        remove = logits.softmax(-1) < self.epsilon
        return logits.masked_fill(_protect_top(remove, logits, self.min_tokens_to_keep), NEG_INF)


class Eta(LogitsProcessor):
    """Eta sampling: drop tokens below ``min(eta, sqrt(eta) * exp(-entropy))`` (0 = off)."""

    def __init__(self, eta: float = 0.0, min_tokens_to_keep: int = 1):
        if not 0 <= eta < 1:
            raise ValueError(f"eta must be in [0, 1) (0 = off), got {eta}")
        _check_keep(min_tokens_to_keep)
        self.eta, self.min_tokens_to_keep = float(eta), min_tokens_to_keep

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.eta <= 0:
            return logits
        logp = logits.log_softmax(-1)
        probs = logp.exp()
        entropy = -(probs * logp).nan_to_num().sum(-1, keepdim=True)  # (B, 1); 0 * -inf counts as 0
        cutoff = torch.clamp(math.sqrt(self.eta) * torch.exp(-entropy), max=self.eta)
        remove = probs < cutoff
        return logits.masked_fill(_protect_top(remove, logits, self.min_tokens_to_keep), NEG_INF)


# -- constraints -------------------------------------------------------------------------
class RepetitionPenalty(LogitsProcessor):
    """CTRL's penalty on every token already in the history (prompt included): positive logits are
    divided by ``penalty``, negative ones multiplied (1 = off; < 1 encourages repetition)."""

    def __init__(self, penalty: float = 1.0):
        if not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1 = off), got {penalty}")
        self.penalty = float(penalty)

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.penalty == 1.0 or history.size(1) == 0:
            return logits
        seen = token_counts(history, logits.size(-1)) > 0
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        # a tiny penalty must not make a positive logit +inf (NaN probabilities): the largest finite
        # value is the same limit, the seen positive tokens tied at the top
        penalised = penalised.clamp(max=torch.finfo(penalised.dtype).max)
        return torch.where(seen, penalised, logits)


class FrequencyPresencePenalty(LogitsProcessor):
    """OpenAI-style additive penalties: ``logit -= frequency_penalty * count + presence_penalty * (count > 0)``
    over the tokens generated so far (the prompt is not counted)."""

    def __init__(self, frequency_penalty: float = 0.0, presence_penalty: float = 0.0):
        self.frequency_penalty, self.presence_penalty = float(frequency_penalty), float(presence_penalty)
        self.prompt_length = 0

    def setup(self, *, prompt_length, max_new_tokens, eos_token_id):
        self.prompt_length = prompt_length

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        generated = history[:, self.prompt_length:]
        if (self.frequency_penalty == 0 and self.presence_penalty == 0) or generated.size(1) == 0:
            return logits
        counts = token_counts(generated, logits.size(-1))
        return logits - self.frequency_penalty * counts - self.presence_penalty * (counts > 0).to(logits.dtype)


class NoRepeatNGram(LogitsProcessor):
    """Forbid any n-gram of size ``ngram_size`` from occurring twice in the history (0 = off)."""

    def __init__(self, ngram_size: int = 0):
        if not isinstance(ngram_size, int) or ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be an int >= 0 (0 = off), got {ngram_size!r}")
        self.n = ngram_size

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        n, t = self.n, history.size(1)
        if n == 0 or t < n:
            return logits
        V = logits.size(-1)
        if n == 1:
            return logits.masked_fill(token_counts(history, V) > 0, NEG_INF)
        windows = history.unfold(1, n, 1)  # (B, t-n+1, n): every n-gram seen so far
        suffix = history[:, t - n + 1:]  # (B, n-1): what an n-gram ending at the next token starts with
        hit = (windows[:, :, :-1] == suffix[:, None, :]).all(-1)  # (B, t-n+1)
        banned_ids = torch.where(hit, windows[:, :, -1].clamp(max=V), V)  # non-matches go to the spare column
        banned = torch.zeros(logits.size(0), V + 1, dtype=torch.bool, device=logits.device)
        banned.scatter_(1, banned_ids, True)
        return logits.masked_fill(banned[:, :V], NEG_INF)


class BadWords(LogitsProcessor):
    """Never complete any of the token sequences ``bad_words_ids`` (a list of lists of ids)."""

    def __init__(self, bad_words_ids: Sequence[Sequence[int]] = ()):
        ids = [list(w) for w in bad_words_ids]
        if any(len(w) == 0 or any(not isinstance(i, int) or i < 0 for i in w) for w in ids):
            raise ValueError(f"bad_words_ids must be a list of non-empty lists of token ids >= 0, got {bad_words_ids!r}")
        self.single = sorted({w[0] for w in ids if len(w) == 1})
        self.multi = [(torch.tensor(w[:-1]), w[-1]) for w in ids if len(w) > 1]
        self.eos_token_id = None

    def setup(self, *, prompt_length, max_new_tokens, eos_token_id):
        self.eos_token_id = eos_token_id

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if not self.single and not self.multi:
            return logits
        V = logits.size(-1)
        banned = torch.zeros_like(logits, dtype=torch.bool)  # (B, V)
        single = [i for i in self.single if i < V and i != self.eos_token_id]  # a lone eos is never banned
        if single:
            banned[:, single] = True
        for prefix, last in self.multi:
            k = prefix.numel()
            if history.size(1) < k or last >= V:
                continue
            match = (history[:, -k:] == prefix.to(history.device)).all(-1)  # (B,)
            banned[:, last] |= match
        return logits.masked_fill(banned, NEG_INF)


class MinNewTokens(LogitsProcessor):
    """Forbid the end-of-sequence token until ``min_new_tokens`` tokens have been generated."""

    def __init__(self, min_new_tokens: int = 0, eos_token_id: int | None = None):
        if not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be an int >= 0, got {min_new_tokens!r}")
        self.min_new_tokens, self.eos_token_id, self.prompt_length = min_new_tokens, eos_token_id, 0

    def setup(self, *, prompt_length, max_new_tokens, eos_token_id):
        self.prompt_length = prompt_length
        if self.eos_token_id is None:
            self.eos_token_id = eos_token_id

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if self.eos_token_id is None or history.size(1) - self.prompt_length >= self.min_new_tokens:
            return logits
        out = logits.clone()
        out[:, self.eos_token_id] = NEG_INF
        return out


class ForcedEnd(LogitsProcessor):
    """Force the end-of-sequence token as the last token when the budget ``max_new_tokens`` runs out."""

    def __init__(self, forced_end: bool = True, eos_token_id: int | None = None):
        self.enabled, self.eos_token_id = bool(forced_end), eos_token_id
        self.prompt_length, self.max_new_tokens = 0, None

    def setup(self, *, prompt_length, max_new_tokens, eos_token_id):
        self.prompt_length, self.max_new_tokens = prompt_length, max_new_tokens
        if self.eos_token_id is None:
            self.eos_token_id = eos_token_id

    def __call__(self, history: Tensor, logits: Tensor) -> Tensor:
        if not self.enabled or self.eos_token_id is None or self.max_new_tokens is None:
            return logits
        if history.size(1) - self.prompt_length != self.max_new_tokens - 1:
            return logits
        out = torch.full_like(logits, NEG_INF)
        out[:, self.eos_token_id] = 0.0
        return out


#: processor name -> the decoding settings it is built from, in the order the built-in strategies
#: apply processors (see the module docstring): constraints first, then temperature and the filters
PROCESSOR_SETTINGS = {
    "repetition_penalty": ("repetition_penalty",),
    "frequency_penalty": ("frequency_penalty", "presence_penalty"),
    "no_repeat_ngram": ("no_repeat_ngram_size",),
    "bad_words": ("bad_words_ids",),
    "min_new_tokens": ("min_new_tokens",),
    "forced_end": ("forced_end",),
    "temperature": ("temperature",),
    "top_k": ("top_k",),
    "top_p": ("top_p",),
    "typical": ("typical_p",),
    "min_p": ("min_p",),
    "epsilon": ("epsilon",),
    "eta": ("eta",),
}
PROCESSOR_ORDER = tuple(PROCESSOR_SETTINGS)

#: the value of each setting that turns its processor off
OFF = {"repetition_penalty": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0, "no_repeat_ngram_size": 0,
       "bad_words_ids": None, "min_new_tokens": 0, "forced_end": False, "temperature": 1.0, "top_k": 0,
       "top_p": 1.0, "typical_p": 1.0, "min_p": 0.0, "epsilon": 0.0, "eta": 0.0}

# constructor argument names where they differ from the decoding setting names
_ARG = {"repetition_penalty": "penalty", "no_repeat_ngram_size": "ngram_size"}


#: the built-in processors that act on the raw scores (the rest shape the distribution)
CONSTRAINTS = ("repetition_penalty", "frequency_penalty", "no_repeat_ngram", "bad_words", "min_new_tokens", "forced_end")


def named_processors(spec) -> dict[str, dict]:
    """The ``processors`` setting as name -> settings: a list of names, a mapping name -> settings
    (None for a processor's defaults), or None/empty (none)."""
    if not spec:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, (list, tuple)):
        return {str(n): {} for n in spec}
    if isinstance(spec, dict):
        out = {}
        for n, v in spec.items():
            if v is not None and not isinstance(v, dict):
                raise ValueError(f"processors.{n} must be a mapping of that processor's settings (or null), got {v!r}")
            out[str(n)] = dict(v or {})
        return out
    raise ValueError(f"processors must be a list of processor names or a mapping name -> settings, got {spec!r}")


def setup_processor(proc, prompt_length: int, max_new_tokens: int, eos_token_id: int | None) -> None:
    """Call the processor's optional ``setup`` hook."""
    setup = getattr(proc, "setup", None)
    if callable(setup):
        setup(prompt_length=prompt_length, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id)


def build_processors(settings: dict, registry=None) -> list[LogitsProcessor]:
    """The active processors for ``settings`` (decoding setting -> value) in the documented order: the
    built-in ones in ``PROCESSOR_ORDER`` (a processor whose settings are all at their off value is left
    out: it would be the identity), with the processors named in ``settings["processors"]`` after the
    built-in constraints (``stage = "constraint"``) or after the built-in filters (the default)."""
    if registry is None:
        from ..registry import LOGITS_PROCESSORS as registry
    from ..registry import validate_kwargs

    named = named_processors(settings.get("processors"))
    built = {}
    for name in PROCESSOR_ORDER:
        keys = PROCESSOR_SETTINGS[name]
        given = {k: settings[k] for k in keys if k in settings}
        if name in named:
            if any(v != OFF[k] for k, v in given.items() if not (k == "bad_words_ids" and not v)):
                raise ValueError(f"processor '{name}' is both set by its setting(s) {', '.join(keys)} and named in "
                                 f"processors: use one of the two.")
            continue
        if not given or all(v == OFF[k] or (k == "bad_words_ids" and not v) for k, v in given.items()):
            continue
        built[name] = registry.get(name)(**{_ARG.get(k, k): v for k, v in given.items()})
    constraints, filters = [], []
    for name, kwargs in named.items():
        factory = registry.get(name)  # unknown: an error listing the registered processors
        validate_kwargs(factory, kwargs, f"logits processor '{name}' (processors.{name})")
        proc = factory(**kwargs)
        if name in PROCESSOR_SETTINGS:
            built[name] = proc
        elif getattr(proc, "stage", "filter") == "constraint":
            constraints.append(proc)
        else:
            filters.append(proc)
    ordered = [built[n] for n in PROCESSOR_ORDER if n in built]
    split = sum(1 for n in PROCESSOR_ORDER if n in built and n in CONSTRAINTS)
    return ordered[:split] + constraints + ordered[split:] + filters
