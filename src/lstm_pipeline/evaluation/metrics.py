"""Loss figures of a scored text: nats per token, perplexity, bits per token (and per character),
and the running totals a carried pass adds its windows to (:class:`ScoreTotals`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def loss_metrics(nll: float, count: int, chars_per_token: float | None = None) -> dict:
    """Mean loss (nats per token), perplexity (capped at e^50) and bits per token of ``nll`` (nats)
    summed over ``count`` tokens, plus the count; with ``chars_per_token``, bits per character
    (``bpc``) too. A count of 0 gives a loss of 0."""
    loss = nll / max(count, 1)
    out = {"loss": loss, "ppl": math.exp(min(loss, 50)), "bits_per_token": loss / math.log(2), "tokens": count}
    if chars_per_token:
        out["bpc"] = out["bits_per_token"] / chars_per_token
    return out


def token_logprobs(logits: Tensor, y: Tensor) -> Tensor:
    """logits (B, T, V) (any float dtype; output=adaptive: log-probabilities), targets y (B, T) ->
    the log-probability (nats, float32) of each target (B, T)."""
    return torch.log_softmax(logits.float(), -1).gather(-1, y[..., None]).squeeze(-1)


class ScoreTotals:
    """Summed NLL (nats), targets predicted right (argmax) and targets of a carried pass, as one
    float64 tensor (3,) on the windows' device: added to without a device sync, summed across
    processes as it is (``totals``), read at the end (:meth:`metrics`)."""

    def __init__(self, device=None):
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)  # nll, correct, count

    def add(self, logits: Tensor, y: Tensor) -> Tensor:
        """Score one window: logits (B, T, V), y (B, T) -> each target's log-probability (B, T) float32."""
        logp = token_logprobs(logits, y)
        self.totals += torch.stack([-logp.double().sum(), (logits.argmax(-1) == y).sum().double(),
                                    torch.tensor(float(y.numel()), dtype=torch.float64, device=y.device)])
        return logp

    @staticmethod
    def metrics(totals: Tensor, chars_per_token: float | None = None) -> dict:
        """:func:`loss_metrics` of ``totals`` (3,) (e.g. summed over processes) plus the accuracy ``acc``."""
        nll, correct, count = totals.tolist()
        count = int(count)
        return {**loss_metrics(nll, count, chars_per_token), "acc": correct / max(count, 1)}
