"""Learning-rate schedules not in ``torch.optim.lr_scheduler``."""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` of the base lr
    at ``total_steps``."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, total_steps: int = 1000,
                 min_lr_ratio: float = 0.0, last_epoch: int = -1):
        if total_steps <= 0:
            raise ValueError(f"scheduler.total_steps must be > 0 (it follows trainer.max_steps), not {total_steps}")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        super().__init__(optimizer, self._factor, last_epoch)

    def _factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class ExponentialAfter(LambdaLR):
    """Constant for ``start`` scheduler steps, then multiplied by ``gamma`` at every step (char-rnn's
    ``learning_rate_decay`` after ``learning_rate_decay_after`` epochs, with ``interval: epoch``)."""

    def __init__(self, optimizer: Optimizer, start: int = 10, gamma: float = 0.97, last_epoch: int = -1):
        self.start, self.gamma = start, gamma
        super().__init__(optimizer, self._factor, last_epoch)

    def _factor(self, step: int) -> float:
        return self.gamma ** max(step - self.start + 1, 0)
