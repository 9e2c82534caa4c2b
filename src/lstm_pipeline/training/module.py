"""The Lightning training loop: truncated BPTT with the hidden state carried between batches."""
from __future__ import annotations

import functools
import inspect
import logging
import math
import random
import time
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate

from ..data.resets import forward_with_resets
from ..evaluation.metrics import ScoreTotals
from ..evaluation.stream import carry
from ..models.lm import RecurrentLM
from .ntasgd import NTASGDAveraging

log = logging.getLogger(__name__)

LN2 = math.log(2.0)

#: a validation loss this many times that of a uniform guess (ln V) means the training diverged
DIVERGED_FACTOR = 5.0


class TrainingDiverged(ValueError):
    """The loss became NaN/inf (or exploded): the run stops with one line saying where and what to try."""


class LanguageModelTask(L.LightningModule):
    def __init__(self, model: Mapping[str, Any], vocab_size: int, optim: Mapping[str, Any],
                 scheduler: Mapping[str, Any] | None = None, chars_per_token: Mapping[str, float] | None = None,
                 carry_state: bool = True):
        super().__init__()
        # plain dicts only: modules are built from config, never pickled into checkpoints
        self.save_hyperparameters()
        self.model = RecurrentLM(vocab_size, **model)
        self.chars_per_token = dict(chars_per_token or {})
        self.carry_state = carry_state
        self._train_state = None      # carried (detached) between consecutive training batches
        self._eval: dict[str, Any] = {}
        self._t_last = None
        # the RNG states (torch, cuda, numpy, python) right after the last training batch: set again before the
        # next one, so that nothing run between two batches (validation, a new epoch's dataloader iterator, a
        # checkpoint, a callback) draws from the stream training uses; a checkpoint saves these, and a resume
        # sets them before its first batch. Training's random stream so depends on the training steps only.
        self._rng_after_batch = None
        self._finite = None           # (step, bool tensor): was the last training loss finite (checked lazily)
        self.val_metrics: dict[str, float] = {}  # the last validation's metrics (val_loss, ...), set at its end

    # -- training -----------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # a new epoch starts the streams from their beginning. Lightning calls this hook only for an
        # epoch that starts at its first batch, never for the epoch a checkpoint is resumed in the middle
        # of (that one keeps the state restored by on_load_checkpoint): so the reset is unconditional.
        # (A "skip the next reset after a restore" flag would skip the reset of the epoch *after* a
        # resumed one, since the resumed one never calls this hook.)
        self._train_state = None
        self._t_last = time.perf_counter()

    def _diverged_advice(self) -> str:
        lr = self.hparams.optim.get("lr") if self.hparams.optim else None
        now = f", now {lr:g}" if isinstance(lr, (int, float)) else ""
        return (f"Try a lower learning rate (optim.lr{now}), gradient clipping (trainer.gradient_clip_val=0.25) or "
                f"full precision (trainer.precision=32). Nothing of the diverged run was exported or checkpointed.")

    def _check_finite_loss(self) -> None:
        """Raise :class:`TrainingDiverged` if the last training loss was NaN/inf. Checked one batch late
        (at the next batch, validation, or the end) so that a GPU is not synchronised at every step."""
        if self._finite is None:
            return
        step, finite = self._finite
        self._finite = None
        if not bool(finite):
            raise TrainingDiverged(f"the training loss is not finite (NaN or inf) at step {step}: the training diverged. "
                                   + self._diverged_advice())

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._check_finite_loss()
        if self._rng_after_batch is not None:
            _set_rng_state(self._rng_after_batch)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        # the module's hook runs after every callback's: a checkpoint written by one of them in this hook
        # takes the state now (:meth:`_resume_rng`)
        self._rng_after_batch = _rng_state()

    def training_step(self, batch, batch_idx):
        x, y, *reset = batch  # (B, T), (B, T) [, reset_mask (B, T) bool: batching.mode documents/random_windows]
        state = self._train_state if self.carry_state else None
        if state is not None and state[0].device != x.device:
            state = tuple(s.to(x.device) for s in state)
        penalties = []

        def forward(inp, st):  # (B, t) -> the output layer's input (B, t, H'), state; collects the AR/TAR penalty
            out, st, pen = self.model.features_train(inp, st)
            penalties.append(pen)
            return out, st

        # documents / random_windows batches carry a reset mask: the state is zeroed where a document starts
        features, state = forward_with_resets(self.model, x, state, reset[0] if reset else None, forward=forward)
        penalty = torch.stack(penalties).mean()
        self._train_state = tuple(s.detach() for s in state)
        loss, correct, count = self.model.head_loss(features, y)  # output layer + cross-entropy in one
        self._log_train_metrics(x, loss, correct, count, penalty)
        total = loss + penalty if self.model.ar_alpha or self.model.tar_beta else loss
        self._finite = (self.global_step, torch.isfinite(total.detach()))
        return total

    def _log_train_metrics(self, x, loss, correct, count, penalty) -> None:
        now = time.perf_counter()
        detached = loss.detach()
        self.log("train_loss", detached, prog_bar=True)
        self.log("train_ppl", torch.exp(detached.clamp(max=50.0)))
        self.log("train_bits_per_token", detached / LN2)
        cpt = self.chars_per_token.get("train")
        if cpt:
            self.log("train_bpc", detached / LN2 / cpt)
        self.log("train_acc", correct.float() / count.clamp(min=1))
        if self.model.ar_alpha or self.model.tar_beta:
            self.log("train_ar_tar", penalty.detach())
        self.log("lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]))
        if self._t_last is not None:
            self.log("tokens_per_sec", x.numel() * self.trainer.world_size / max(now - self._t_last, 1e-9))
        self._t_last = now

    # -- evaluation: the state is carried across the whole split -------------------------------
    # the datamodule's validation/test windows are the stream windows of ``evaluate`` (StreamBatches on
    # this rank's rows): each is one step of the carried pass (evaluation.stream.carry), scored into
    # the totals ``evaluate`` scores into (evaluation.metrics.ScoreTotals), summed over the processes
    def _eval_start(self, split: str) -> None:
        self._eval[split] = {"state": None, "totals": ScoreTotals(self.device)}

    def _eval_step(self, split: str, batch) -> None:
        x, y = batch  # (B, T), (B, T)
        acc = self._eval[split]
        logits, acc["state"] = carry(self.model, x, acc["state"])  # (B, T, V)
        acc["totals"].add(logits, y)

    def _eval_end(self, split: str, prefix: str) -> dict[str, float]:
        totals = self._eval.pop(split)["totals"].totals  # (3,) float64
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        scored = ScoreTotals.metrics(totals, self.chars_per_token.get(split))
        metrics = {f"{prefix}_{k}": scored[k] for k in ("loss", "ppl", "bits_per_token", "acc", "bpc") if k in scored}
        for k, v in metrics.items():
            self.log(k, v, prog_bar=k in (f"{prefix}_loss", f"{prefix}_bpc"), sync_dist=False, rank_zero_only=False)
        return metrics

    def on_train_end(self) -> None:
        self._check_finite_loss()

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._check_finite_loss()
        self._eval_start("validation")

    def validation_step(self, batch, batch_idx):
        self._eval_step("validation", batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self._eval_end("validation", "val")
        if not self.trainer.sanity_checking:
            self._check_val_loss(metrics["val_loss"])
        self.val_metrics = metrics  # the last validation's, unrounded (NT-ASGD's trigger reads val_loss)
        self._t_last = None  # validation time is not training throughput

    def _check_val_loss(self, val_loss: float) -> None:
        """A NaN/inf validation loss, or one far above a uniform guess's ``ln V``, stops the run before
        any checkpoint of it is written (the checkpoint callback runs after this hook)."""
        uniform = math.log(max(self.model.vocab_size, 2))
        if not math.isfinite(val_loss):
            raise TrainingDiverged(f"the validation loss is {val_loss} at step {self.global_step}: the training "
                                   f"diverged. " + self._diverged_advice())
        if val_loss > DIVERGED_FACTOR * uniform:
            raise TrainingDiverged(
                f"the validation loss is {val_loss:.4g} at step {self.global_step}, more than {DIVERGED_FACTOR:g} times "
                f"that of a uniform guess over the {self.model.vocab_size} tokens ({uniform:.3f}): the training "
                f"diverged. " + self._diverged_advice())

    def on_test_epoch_start(self) -> None:
        self._eval_start("test")

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test", "test")

    # -- optimisation ---------------------------------------------------------------------
    def configure_callbacks(self) -> list:
        """NT-ASGD's side of the run (:class:`~.ntasgd.NTASGDAveraging`; a no-op for other optimizers),
        part of the task: a Trainer that fits it directly (a bench, a notebook) averages as ``train`` does."""
        return [NTASGDAveraging()]

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optim, _partial_=True)(self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        sched_cfg = dict(self.hparams.scheduler)
        interval = sched_cfg.pop("interval", "step")
        monitor = sched_cfg.pop("monitor", "val_loss")
        factory = instantiate(sched_cfg, _partial_=True)
        if _takes(factory, "progress"):  # budgeted schedules: the run's progress, read from the trainer's clock
            factory = functools.partial(factory, progress=self._run_progress)
        scheduler = factory(optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": monitor}}

    def _run_progress(self, step: int) -> float:
        """The fraction of the run done after ``step`` optimizer steps (time or steps: :func:`.budget.run_progress`)."""
        from .budget import run_progress

        return run_progress(self.trainer, step)

    def on_train_start(self) -> None:
        self._apply_schedule_settings()

    def _apply_schedule_settings(self) -> None:
        """Resumed ("train longer"): the scheduler settings of this command win over the checkpoint's.

        A scheduler's state_dict carries its settings (``T_max``, ``total_steps``, ``step_size`` ...),
        so restoring a checkpoint would keep the old horizon: past it, cosine climbs back to its peak and
        warmup_cosine stays at its floor. Each setting of the config that differs from the restored one
        is set again, and the learning rate is recomputed for the current step from the schedule's closed
        form: with ``T_max``/``total_steps: ${trainer.max_steps}`` the schedule is stretched to the new
        horizon and goes on from where the stretched curve is at this step."""
        if not self.hparams.scheduler or self._trainer is None:
            return
        settings = {k: v for k, v in dict(self.hparams.scheduler).items() if k not in ("_target_", "interval", "monitor")
                    and not str(k).startswith("_")}
        for conf in self.trainer.lr_scheduler_configs:
            sched = conf.scheduler
            if hasattr(sched, "refresh"):  # reads the run's progress (budgeted schedules): recomputed from it
                sched.refresh()
                continue
            changed = {k: (getattr(sched, k), v) for k, v in settings.items()
                       if hasattr(sched, k) and isinstance(getattr(sched, k), (int, float)) and getattr(sched, k) != v}
            if not changed:
                continue
            for k, (_, v) in changed.items():
                setattr(sched, k, v)
            lrs = None
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                lrs = [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
            elif hasattr(sched, "_get_closed_form_lr"):
                lrs = sched._get_closed_form_lr()
            if lrs is not None:
                for group, lr in zip(sched.optimizer.param_groups, lrs):
                    group["lr"] = lr
                sched._last_lr = list(lrs)
            if self.trainer.is_global_zero:
                log.info("resumed with new scheduler settings (%s)%s", ", ".join(
                    f"{k} {old} -> {new}" for k, (old, new) in changed.items()),
                    f": learning rate {lrs[0]:.6g} at step {sched.last_epoch}" if lrs else "")

    # -- exact resume: carried state and RNG travel with the checkpoint -------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = self._train_state
        world = self.trainer.world_size if self._trainer is not None else 1
        if state is not None and world > 1:
            # every rank carries its own streams' state: gather them all, each rank takes its own back
            state = [self.all_gather(s) for s in state]  # each (W, *shape)
        extra = {
            "train_state": None if state is None else [s.cpu() for s in state],
            "train_state_world_size": world,
            "rng": self._resume_rng(),
        }
        # merged: callbacks (NT-ASGD's averaged weights, ntasgd.NTASGDAveraging) write there first
        checkpoint.setdefault("lstm_pipeline", {}).update(extra)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("lstm_pipeline", {})
        state = extra.get("train_state")
        if state is not None:
            saved_world = extra.get("train_state_world_size", 1)
            world = self.trainer.world_size if self._trainer is not None else 1
            rank = self.trainer.global_rank if self._trainer is not None else 0
            # streams cut for another number of processes: the saved state belongs to other text
            self._train_state = tuple(s[rank] if world > 1 else s for s in state) if saved_world == world else None
        if extra.get("rng"):
            # set just before the first resumed batch (on_train_batch_start), not now: what runs until then
            # (the dataloader's iterator, a sanity validation) must not move it
            self._rng_after_batch = extra["rng"]

    def _resume_rng(self) -> dict:
        """The RNG states a resume from a checkpoint written now must start from: those right after the
        last training batch. Written inside that batch's ``on_train_batch_end`` (a snapshot,
        ``checkpoint.every_n_train_steps``), before this module recorded them, they are the current ones."""
        trainer = self._trainer
        if trainer is not None and self._rng_after_batch is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress.total
            if progress.processed == progress.completed:  # the batch is complete: its states were recorded
                return self._rng_after_batch
        return _rng_state()


def _takes(factory, name: str) -> bool:
    """Does ``factory`` (a class, function or functools.partial of one) take the argument ``name``?"""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False



def _rng_state() -> dict:
    """RNG states (torch's CPU and, once CUDA is in use, every CUDA device's; numpy's; python's) as tensors
    and plain lists, so that a weights-only ``torch.load`` reads them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), **({"cuda": cuda} if cuda else {}),
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    kind, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
