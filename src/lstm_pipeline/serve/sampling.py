"""Thin adapters over ``generation/`` for a batch whose rows belong to different requests
(sampling with each request's own random numbers is ``strategies.sample_from_logits(logits, u=)``):
:func:`split_processors` splits a strategy's processors into those that read the history
(constraints, per request) and the sampling filters (which only look at the logits, so rows of
different requests with equal settings are filtered in one call).
"""
from __future__ import annotations

from typing import Any

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
