"""NT-ASGD (non-monotonically triggered averaged SGD, Merity et al. 2017).

Plain SGD until validation has not improved on the best loss from more than ``nonmono`` checks
ago; from then on every step also updates a running average of the weights, and evaluation and
export use the average. The switch (``averaging``, the step it happened at, the validation
history) lives in the param group and the averages in the per-parameter state, so the whole
thing travels inside ``optimizer.state_dict()`` and survives a checkpoint.
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer


class NTASGD(Optimizer):
    lstm_pipeline_api = "1"

    def __init__(self, params, lr: float = 30.0, weight_decay: float = 0.0, nonmono: int = 5):
        if lr <= 0:
            raise ValueError(f"optim.lr must be > 0, not {lr}")
        if nonmono < 0:
            raise ValueError(f"optim.nonmono must be >= 0 (0 switches at the first validation), not {nonmono}")
        defaults = dict(lr=lr, weight_decay=weight_decay, nonmono=nonmono, averaging=False,
                        averaged_steps=0, switch_step=-1, val_history=[], steps=0)
        super().__init__(params, defaults)

    # -- the trigger ---------------------------------------------------------------------------
    @property
    def averaging(self) -> bool:
        return bool(self.param_groups[0]["averaging"])

    def observe(self, val_loss: float) -> bool:
        """Record one validation loss; switch to averaging when it is not better than the best one
        from before the last ``nonmono`` checks. Returns True on the check that switches."""
        g = self.param_groups[0]
        history = list(g["val_history"])
        nonmono = g["nonmono"]
        switch = not g["averaging"] and (
            nonmono == 0 or (len(history) > nonmono and val_loss > min(history[:-nonmono])))
        history.append(float(val_loss))
        for group in self.param_groups:
            group["val_history"] = history
            if switch:
                group["averaging"], group["switch_step"] = True, group["steps"]
        return switch

    # -- the update ------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["steps"] += 1
            if group["averaging"]:
                group["averaged_steps"] += 1
            n = group["averaged_steps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["weight_decay"]:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                p.add_(d_p, alpha=-group["lr"])
                if group["averaging"]:
                    state = self.state[p]
                    if n == 1 or "ax" not in state:
                        state["ax"] = p.detach().clone()
                    else:
                        state["ax"].lerp_(p.detach(), 1.0 / n)  # running mean of the iterates, in place
        return loss

    def averaged(self) -> dict[torch.Tensor, torch.Tensor]:
        """{param: its running average} (empty before the switch)."""
        return {p: self.state[p]["ax"] for g in self.param_groups for p in g["params"]
                if "ax" in self.state.get(p, {})}

    def swap_averaged(self) -> None:
        """Exchange each parameter with its average (call twice to undo)."""
        with torch.no_grad():
            for p, ax in self.averaged().items():
                tmp = p.detach().clone()
                p.copy_(ax)
                ax.copy_(tmp)
