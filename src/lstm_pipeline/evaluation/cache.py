"""The neural cache pointer (Grave et al., 2017, "Improving Neural Language Models with a
Continuous Cache"), as AWD-LSTM applies it at evaluation time.

The last ``size`` hidden outputs h_i of the top layer are kept with the token that followed each.
The next-token distribution mixes the model's softmax with a pointer over that memory:

    p(w) = (1 - lam) * p_model(w) + lam * sum_{i: x_{i+1} = w} softmax_i(theta * h_t . h_i)

No parameter changes; ``theta`` (flatness) and ``lam`` (interpolation) are tuned on validation data.
With an empty memory (the first token of each stream) p = p_model.
"""
from __future__ import annotations

import torch

from .metrics import loss_metrics, token_logprobs
from .stream import carried_windows


@torch.no_grad()
def cache_evaluate(model, ids, batch_size: int = 16, bptt: int = 256, size: int = 500, theta: float = 0.3,
                   lam: float = 0.1, device: str = "cpu", chars_per_token: float | None = None) -> dict:
    """The carried-state pass (:func:`.stream.carried_windows`) over ``ids`` (N,) scored with the cache
    mixture: :func:`.metrics.loss_metrics` (with ``bpc`` given ``chars_per_token``). The memory holds each row's last ``size`` positions, across
    windows. Raises ``ValueError`` for ``size < 1`` or ``lam`` outside [0, 1]."""
    if size < 1 or not 0 <= lam <= 1:
        raise ValueError(f"cache needs size >= 1 and 0 <= lam <= 1 (got size={size}, lam={lam})")
    model = model.to(device).eval()

    def top_layer(x, state):  # (B, T) -> the top layer's output (B, T, H), whatever the layering; state
        _, h, state = model._features(x, state)
        return h, state

    mem_h = mem_y = None  # (B, S', H), (B, S') with S' <= size
    nll, count = 0.0, 0
    for w in carried_windows(top_layer, ids, batch_size, bptt, device):
        h, y = w.out, w.y
        T = h.size(1)
        keys = h if mem_h is None else torch.cat([mem_h, h], 1)  # (B, S'+T, H)
        targets = y if mem_y is None else torch.cat([mem_y, y], 1)  # (B, S'+T)
        S = keys.size(1) - T  # memory entries from earlier windows
        q = torch.arange(T, device=device)[:, None]  # query t
        k = torch.arange(S + T, device=device)[None, :]
        # query t sees the `size` entries just before it: keys S+t-size .. S+t-1
        allowed = (k < S + q) & (k >= S + q - size)  # (T, S+T)
        scores = theta * torch.einsum("bth,bkh->btk", h.float(), keys.float())  # (B, T, S+T)
        scores = scores.masked_fill(~allowed, float("-inf"))
        has_mem = allowed.any(-1)  # (T,)
        weights = torch.nan_to_num(scores.softmax(-1), nan=0.0)  # rows with no memory -> 0
        # only the target's probability is needed: no (B, T, V) pointer distribution
        p_model = token_logprobs(model._logits(h), y).exp()  # (B, T)
        p_cache = (weights * (targets[:, None, :] == y[..., None])).sum(-1)  # (B, T)
        mix = torch.where(has_mem[None, :], (1 - lam) * p_model + lam * p_cache, p_model)
        nll -= mix.clamp_min(1e-30).log().sum().item()
        count += y.numel()
        mem_h, mem_y = keys[:, -size:], targets[:, -size:]
    return loss_metrics(nll, count, chars_per_token)
