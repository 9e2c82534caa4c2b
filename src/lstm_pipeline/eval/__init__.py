"""Evaluation methods beyond the plain carried-state pass of ``lstm_pipeline.evaluation``:
dynamic evaluation, the neural cache pointer and generation-quality metrics."""

import math


def loss_metrics(nll: float, count: int) -> dict:
    """Mean loss (nats per token), perplexity (capped at e^50) and bits per token of ``nll`` summed
    over ``count`` tokens, plus the count."""
    loss = nll / count
    return {"loss": loss, "ppl": math.exp(min(loss, 50)), "bits_per_token": loss / math.log(2), "tokens": count}
