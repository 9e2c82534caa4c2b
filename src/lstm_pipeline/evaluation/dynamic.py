"""Dynamic evaluation (Krause et al., 2018, "Dynamic Evaluation of Neural Sequence Models").

The text is read in segments of ``bptt`` tokens. Each segment is first *scored* with the current
weights (that is the reported loss: no token is ever predicted by weights that saw it), then the
weights take one gradient step on that segment's loss, so the model adapts to the text as it goes.
The update is Krause et al.'s RMS-normalised rule with a decay towards the original weights:

    ms  <- mean of g^2 (running average over the segments seen so far)
    th  <- th - lr * g / (sqrt(ms) + epsilon) + decay * (th0 - th)

(The paper estimates ``ms`` on training data; here it is estimated online from the gradients of
already-scored segments, which needs no training data and uses nothing from the future.)
The state is carried across segments (detached), as in the plain evaluation.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .metrics import loss_metrics
from .stream import carried_windows


def dynamic_evaluate(model, ids, batch_size: int = 1, bptt: int = 32, lr: float = 2e-5, decay: float = 0.02,
                     epsilon: float = 1e-3, device: str = "cpu", chars_per_token: float | None = None) -> dict:
    """Dynamic evaluation of a copy of ``model`` over ``ids`` (N,) in the carried-state pass
    (:func:`.stream.carried_windows`, windows of ``bptt``): :func:`.metrics.loss_metrics` of the
    scores taken before each step (with ``bpc`` given ``chars_per_token``). ``model`` is left unchanged. Raises ``ValueError`` for a negative
    ``lr``/``decay``, ``epsilon <= 0`` or ``bptt < 1``."""
    if lr < 0 or decay < 0 or epsilon <= 0 or bptt < 1:
        raise ValueError(f"dynamic_eval needs lr >= 0, decay >= 0, epsilon > 0, bptt >= 1 "
                         f"(got lr={lr}, decay={decay}, epsilon={epsilon}, bptt={bptt})")
    model = copy.deepcopy(model).to(device).eval()  # eval mode: no dropout; gradients still flow
    params = [p for p in model.parameters() if p.requires_grad]
    original = [p.detach().clone() for p in params]
    ms = [torch.zeros_like(p) for p in params]
    nll, count, seen = 0.0, 0, 0
    # each window is scored before the step on it; the next one starts from its state, detached
    for w in carried_windows(model, ids, batch_size, bptt, device):
        logits, y = w.out, w.y  # (B, T, V), (B, T)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        nll += loss.item() * y.numel()
        count += y.numel()
        model.zero_grad(set_to_none=True)
        loss.backward()
        seen += 1
        with torch.no_grad():
            for p, p0, m in zip(params, original, ms):
                if p.grad is None:
                    continue
                m.mul_((seen - 1) / seen).add_(p.grad.square(), alpha=1.0 / seen)
                p.add_(-lr * p.grad / (m.sqrt() + epsilon) + decay * (p0 - p))
    return loss_metrics(nll, count, chars_per_token)
