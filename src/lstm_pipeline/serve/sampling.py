"""Thin adapters over ``generation/`` for a batch whose rows belong to different requests
(sampling with each request's own random numbers is ``strategies.sample_from_logits(logits, u=)``):
:func:`split_processors` splits a strategy's processors into those that read the history
(constraints, per request) and the sampling filters (which only look at the logits, so rows of
different requests with equal settings are filtered in one call).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..evaluation.metrics import token_logprobs
from ..evaluation.stream import carried_windows
from ..generation.processors import LogitsProcessor, build_processors
from ..generation.strategies import COMMON, DecodingStrategy


def split_processors(decoder: DecodingStrategy) -> tuple[list[LogitsProcessor], list[LogitsProcessor], Any]:
    """``(constraints, filters, filters_key)`` for one request's strategy: fresh constraint
    processors (they keep per-request state set by ``setup``), the sampling-filter processors and a
    hashable key of the filter settings (equal keys filter together). The two lists together are
    ``decoder.processors()`` in the same order. A strategy that builds its own processors (a plugin
    overriding ``processors``) keeps them all per request."""
    if type(decoder).processors is not DecodingStrategy.processors:
        return list(decoder.processors()), [], None
    settings = {k: v for k, v in getattr(decoder, "settings", {}).items() if k not in decoder.OWN}
    if not settings:
        return [], [], None
    common = {k: v for k, v in settings.items() if k in COMMON}
    rest = {k: v for k, v in settings.items() if k not in COMMON}
    try:
        constraints, filters = build_processors(common), build_processors(rest)
    except ValueError as exc:
        raise ValueError(f"decoding '{decoder.name()}': {exc}") from None
    key = tuple(sorted((k, repr(v)) for k, v in rest.items())) if filters else None
    return constraints, filters, key


def token_text(tokenizer, token_id: int) -> str:
    """One token as OpenAI's logprobs name it: its text, or ``"bytes:\\xNN..."`` (OpenAI's form) for a
    byte-level token that is not whole UTF-8 on its own (decoded alone it would be ``'\\ufffd'``, and
    distinct tokens would share that name). ``tokenizer``: the project's TextTokenizer."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    raw = _token_bytes(tokenizer, token_id)
    if raw is None:
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def _token_bytes(tokenizer, token_id: int) -> bytes | None:
    """The bytes of a byte-level (GPT-2 table) token, or None for another kind of tokenizer."""
    from tokenizers import decoders

    from ..tokenization.common import byte_to_unicode

    if not isinstance(tokenizer.tk.decoder, decoders.ByteLevel):
        return None
    piece = tokenizer.tk.id_to_token(int(token_id))
    back = {c: b for b, c in byte_to_unicode().items()}
    if piece is None or any(c not in back for c in piece):
        return None
    return bytes(back[c] for c in piece)


def prompt_logprobs(model, ids: list[int], top_k: int, name: Callable[[int], str], chunk: int = 1024) -> list:
    """Every prompt token's log-probability given the tokens before it, read from the zero state
    (as ``prefill`` reads a prompt): ``[(token_id, logprob or None, {name: logprob} or None), ...]``,
    one per token of ``ids``; the first has no context, so ``None`` (OpenAI's echo). ``top_k`` > 0
    adds each position's ``top_k`` most likely tokens, named by ``name(id)``. It is ``evaluate``'s
    carried pass (:func:`~lstm_pipeline.evaluation.stream.carried_windows`, one row, windows of
    ``chunk`` tokens: memory O(chunk x vocabulary)), scored by the same
    :func:`~lstm_pipeline.evaluation.metrics.token_logprobs`."""
    out: list = [(int(ids[0]), None, None)] if ids else []
    if len(ids) < 2:
        return out
    device = next(model.parameters()).device
    for w in carried_windows(model, np.asarray(ids, dtype=np.int64), 1, chunk, device):
        chosen = token_logprobs(w.out, w.y)[0].tolist()  # (T,)
        tops = [None] * len(chosen)
        if top_k > 0:
            v, i = w.out[0].float().log_softmax(-1).topk(top_k, dim=-1)
            tops = [{name(t): float(s) for s, t in zip(vs, ts)} for vs, ts in zip(v.tolist(), i.tolist())]
        out += [(int(t), float(c), top) for t, c, top in zip(w.y[0].tolist(), chosen, tops)]
    return out


class LogitBias(LogitsProcessor):
    """OpenAI's ``logit_bias``: ``bias[token_id]`` added to that token's logit before any filter or
    the choice (-100 in effect bans a token, 100 forces it). ``bias``: {token_id: float in [-100, 100]}."""

    stage = "constraint"

    def __init__(self, bias: dict[int, float]):
        self.ids = [int(t) for t in bias]
        self.values = [float(v) for v in bias.values()]

    def __call__(self, history, logits):
        import torch

        add = torch.zeros(logits.size(-1), dtype=logits.dtype, device=logits.device)
        add[self.ids] = torch.tensor(self.values, dtype=logits.dtype, device=logits.device)
        return logits + add
