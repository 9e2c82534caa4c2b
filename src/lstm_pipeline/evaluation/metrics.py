"""Loss figures of a scored text: nats per token, perplexity, bits per token."""
from __future__ import annotations

import math


def loss_metrics(nll: float, count: int) -> dict:
    """Mean loss (nats per token), perplexity (capped at e^50) and bits per token of ``nll`` summed
    over ``count`` tokens, plus the count."""
    loss = nll / count
    return {"loss": loss, "ppl": math.exp(min(loss, 50)), "bits_per_token": loss / math.log(2), "tokens": count}
