"""Thin adapters over ``generation/`` for a batch whose rows belong to different requests.

Both are candidates to move into ``generation/strategies.py``:

- :func:`sample_with_uniforms` is ``strategies.sample_from_logits`` with the uniform numbers drawn
  by the caller, so that each request's rows draw from the request's own ``torch.Generator`` (the
  same numbers, in the same order, as ``generate`` draws them for that request alone). In
  ``generation/`` it would be ``sample_from_logits(logits, generator, u=None)``.
- :func:`split_processors` splits a strategy's processors into those that read the history
  (constraints, per request) and the sampling filters (which only look at the logits, so rows of
  different requests with equal settings are filtered in one call).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..generation.processors import LogitsProcessor, build_processors
from ..generation.strategies import COMMON, DecodingStrategy


def sample_with_uniforms(logits: Tensor, u: Tensor) -> Tensor:
    """One token per row by inverse CDF, exactly as ``sample_from_logits``: logits (B, V), u (B, 1)
    uniform in [0, 1) -> (B,) long."""
    probs = torch.softmax(logits.float(), dim=-1)
    cdf = probs.cumsum_(-1)  # (B, V)
    u = u.to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


class CachedRegistry:
    """A registry whose ``get`` remembers what it found. ``Registry.get`` reads the installed
    distributions' entry points on every call (~10 ms here); a server looks the same few names up
    for every request, and the installed plugins do not change while it runs."""

    def __init__(self, registry):
        self.registry = registry
        self._found: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._found:
            self._found[name] = self.registry.get(name)
        return self._found[name]


_PROCESSORS: CachedRegistry | None = None


def processor_registry() -> CachedRegistry:
    global _PROCESSORS
    if _PROCESSORS is None:
        from ..registry import LOGITS_PROCESSORS

        _PROCESSORS = CachedRegistry(LOGITS_PROCESSORS)
    return _PROCESSORS


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
        registry = processor_registry()
        constraints, filters = build_processors(common, registry), build_processors(rest, registry)
    except ValueError as exc:
        raise ValueError(f"decoding '{decoder.name()}': {exc}") from None
    key = tuple(sorted((k, repr(v)) for k, v in rest.items())) if filters else None
    return constraints, filters, key
