"""Learning-rate schedules not in ``torch.optim.lr_scheduler``."""
from __future__ import annotations

import math
from typing import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


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


class WarmupCosineTime(LRScheduler):
    """Linear warm-up over the first ``warmup_fraction`` of the run, then cosine decay to
    ``min_lr_ratio`` of the base lr at its very end, where "the run" is what bounds it: its time
    budget (``budget=2m``/``trainer.max_time`` with ``trainer.max_steps=-1``: the schedule reads the
    elapsed training time, that of resumed runs included, at every optimizer step) or its steps.

    ``progress(step) -> float in [0, 1]`` is given by the training task (the trainer's clock, see
    :func:`lstm_pipeline.training.budget.run_progress`); it is not saved in the checkpoint. Without
    one (outside a trainer) the schedule stays at its start. Raises ``ValueError`` for a
    ``warmup_fraction`` outside [0, 1) or a ``min_lr_ratio`` outside [0, 1]."""

    def __init__(self, optimizer: Optimizer, warmup_fraction: float = 0.02, min_lr_ratio: float = 0.0,
                 progress: Callable[[int], float] | None = None, last_epoch: int = -1):
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"scheduler.warmup_fraction must be in [0, 1) (a fraction of the run), not {warmup_fraction}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"scheduler.min_lr_ratio must be in [0, 1], not {min_lr_ratio}")
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        self._progress = progress
        self.last_progress = 0.0
        super().__init__(optimizer, last_epoch)

    def factor(self, progress: float) -> float:
        """The multiplier of the base lr at ``progress`` (fraction of the run, clamped to [0, 1])."""
        p = min(max(progress, 0.0), 1.0)
        if p < self.warmup_fraction:
            return max(p / self.warmup_fraction, 1e-3)
        span = max(1.0 - self.warmup_fraction, 1e-12)
        q = (p - self.warmup_fraction) / span
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * q))

    def get_lr(self) -> list[float]:
        self.last_progress = float(self._progress(self.last_epoch)) if self._progress is not None else 0.0
        f = self.factor(self.last_progress)
        return [base * f for base in self.base_lrs]

    def refresh(self) -> None:
        """Set the learning rate for the run's progress now: a resumed run whose limit changed (a longer
        budget, more steps) goes on from where the new horizon puts it, not from the restored lr."""
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k != "_progress"}
