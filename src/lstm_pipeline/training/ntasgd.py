"""NT-ASGD (non-monotonically triggered averaged SGD, Merity et al. 2017).

Plain SGD until validation has not improved on the best loss from more than ``nonmono`` checks
ago; from then on every step also updates a running average of the weights, and evaluation and
export use the average. The switch (``averaging``, the step it happened at, the validation
history) lives in the param group and the averages in the per-parameter state, so the whole
thing travels inside ``optimizer.state_dict()`` and survives a checkpoint.
"""
from __future__ import annotations

import logging

import lightning as L
import torch
from torch.optim import Optimizer

log = logging.getLogger(__name__)


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


#: where a checkpoint keeps the averaged weights ({parameter name: tensor}), under ``checkpoint["lstm_pipeline"]``
AVERAGED_KEY = "averaged_weights"


def averaged_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The averaged weights a checkpoint holds ({parameter name: tensor}; empty before the switch or for
    another optimizer): the weights the checkpoint was validated with, which export uses."""
    return dict((checkpoint.get("lstm_pipeline") or {}).get(AVERAGED_KEY) or {})


class NTASGDAveraging(L.Callback):
    """The run's side of :class:`NTASGD` (a no-op for any other optimizer).

    * validation (and so the best checkpoint's selection) uses the averaged weights: they are swapped in
      at the start of the validation epoch and back once it ended; each validation's loss then goes to
      :meth:`NTASGD.observe`, which may switch averaging on (one log line says so);
    * a checkpoint holds the averages as ``checkpoint["lstm_pipeline"]["averaged_weights"]``, what export
      reads (:func:`averaged_weights`); a resume restores them with the optimizer's state (``ax``), so
      nothing needs loading here;
    * at the end of fit the model holds the averaged weights (the last ones when averaging never started).

    The validation loss is read from the task's ``val_metrics`` (the float64 value the task computed),
    falling back to the logged ``val_loss``."""

    lstm_pipeline_api = "1"

    @staticmethod
    def optimizer(trainer: L.Trainer) -> NTASGD | None:
        """The run's NT-ASGD optimizer, None for another one."""
        opts = trainer.optimizers
        return opts[0] if opts and isinstance(opts[0], NTASGD) else None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        opt = self.optimizer(trainer)
        if opt is not None and opt.averaging:
            opt.swap_averaged()  # validate (and select the best checkpoint) with the averaged weights

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        opt = self.optimizer(trainer)
        if opt is None:
            return
        if opt.averaging:
            opt.swap_averaged()
        if trainer.sanity_checking or getattr(pl_module, "extra_validation_step", None) == trainer.global_step:
            # the validation a step-bounded run ends with (run_callbacks.ValidateAtEnd) is not one the same run
            # extended would do: observed, it would enter the trigger's history that a resume restores
            return
        val_loss = (getattr(pl_module, "val_metrics", None) or {}).get("val_loss")
        if val_loss is None:
            val_loss = float(trainer.callback_metrics["val_loss"])
        if opt.observe(val_loss) and trainer.is_global_zero:
            # through logging: the terminal and the run's train.log
            log.info("NT-ASGD: validation loss %.4f did not improve for %d checks: averaging from step %d",
                     val_loss, opt.param_groups[0]["nonmono"], trainer.global_step)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        opt = self.optimizer(trainer)
        if opt is not None and opt.averaging:
            names = {p: n for n, p in pl_module.named_parameters()}
            extra = checkpoint.setdefault("lstm_pipeline", {})
            extra[AVERAGED_KEY] = {names[p]: ax.cpu().clone() for p, ax in opt.averaged().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        opt = self.optimizer(trainer)
        if opt is not None and opt.averaging:
            opt.swap_averaged()  # the model is the average (what export writes when no best checkpoint is kept)
