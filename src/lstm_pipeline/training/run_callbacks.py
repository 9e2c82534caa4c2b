"""Callbacks every training run gets (besides its ModelCheckpoint and the configured ones).

* :class:`ValidateAtEnd`: the last step of a step-bounded run is always validated, so a run shorter
  than ``trainer.val_check_interval`` (or ending between two checks) still has a validation loss,
  a best checkpoint and metrics in its model card.
* :func:`batching_callbacks`: variable-length BPTT's learning-rate scaling (``batching.variable_bptt``).
* :func:`progress_bar`: Lightning's progress bar (Rich when installed), whose title reads
  ``Epoch N`` for a run bounded by steps rather than ``Epoch N/-2``, and whose count after a resume
  reads ``81/100``, not ``81/20``.
"""
from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from ..data.vbptt import VariableBPTTScaler

log = logging.getLogger(__name__)


class ValidateAtEnd(L.Callback):
    """Ask Lightning to validate after the final optimizer step (``trainer.max_steps``) when that
    step is not already a validation step; Lightning validates when ``should_stop`` is set."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.max_steps is None or trainer.max_steps < 0 or trainer.global_step < trainer.max_steps:
            return
        if not trainer.enable_validation or trainer.should_stop:
            return
        interval = trainer.val_check_batch
        if isinstance(interval, int) and trainer.check_val_every_n_epoch is None and \
                (trainer.fit_loop.epoch_loop.total_batch_idx + 1) % interval == 0:
            return  # this step validates anyway
        if trainer.is_global_zero:
            log.info("validating at the last step (%d): it is not a multiple of trainer.val_check_interval (%s)",
                     trainer.global_step, trainer.val_check_interval)
        trainer.should_stop = True
        # an extra validation: what keeps state across a resume (NT-ASGD's trigger) leaves it out
        pl_module.extra_validation_step = trainer.global_step


def _title(trainer: L.Trainer, current_epoch: int) -> str:
    if trainer.max_epochs is None or trainer.max_epochs < 0:
        return f"Epoch {current_epoch}"
    return f"Epoch {current_epoch}/{trainer.max_epochs - 1}"


def _total_train_batches(trainer: L.Trainer) -> int | float:
    """The batches the train bar counts to in this epoch. The bar shows ``batch_idx + 1``, the batch's
    place in the epoch, which a resumed run continues from; Lightning's total is the steps *left*
    (``max_steps - global_step``), so a run resumed at step 80 of 100 read ``81/20``. Here the total
    is the batches already run in this epoch plus those left to run (optimizer steps left times
    ``accumulate_grad_batches``), capped by the epoch's length."""
    n = trainer.num_training_batches
    if trainer.max_steps is None or trainer.max_steps < 0:
        return n
    done = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # this epoch's batches before this start
    left = max(0, trainer.max_steps - trainer.global_step) * max(1, int(trainer.accumulate_grad_batches or 1))
    return min(n, done + left)


class RunRichProgressBar(RichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:
        return _title(self.trainer, current_epoch)

    @property
    def total_train_batches(self) -> int | float:
        return _total_train_batches(self.trainer)


class RunTQDMProgressBar(TQDMProgressBar):  # TQDM's own title has no '/-2'
    @property
    def total_train_batches(self) -> int | float:
        return _total_train_batches(self.trainer)


def progress_bar(trainer_cfg: dict) -> list:
    """The run's progress bar callback ([] when ``trainer.enable_progress_bar=false``)."""
    if trainer_cfg.get("enable_progress_bar", True) is False:
        return []
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    return [RunRichProgressBar() if _RICH_AVAILABLE else RunTQDMProgressBar()]


def run_callbacks(trainer_cfg: dict) -> list:
    """Validation at the last step and the progress bar (NT-ASGD's averaging comes with the task:
    ``LanguageModelTask.configure_callbacks``)."""
    return [ValidateAtEnd(), *progress_bar(trainer_cfg)]


def batching_callbacks(batching: dict) -> list:
    """What training needs for the ``batching.*`` settings: variable_bptt's learning-rate scaling (its
    length is ``batching.bptt``), read from the config as the datamodule is (nothing flows back from it)."""
    return [VariableBPTTScaler(batching["bptt"])] if batching.get("variable_bptt") else []
