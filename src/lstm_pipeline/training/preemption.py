"""Preemption: SIGTERM (a scheduler, ``timeout``, a spot instance), SIGINT (Ctrl-C) and, under SLURM,
the requeue signal SIGUSR1 stop a run at the end of its current training step with a resumable
checkpoint (``checkpoints/last.ckpt``, written as every checkpoint is: a resume from it equals the
uninterrupted run), then :class:`Preempted` leaves ``train()``; the ``train`` command prints the resume
command and exits ``128 + signal`` (SIGTERM 143, SIGINT 130).

A step that validates is stopped after its validation (its best checkpoint and NT-ASGD's trigger see it,
as in the uninterrupted run); a second Ctrl-C stops at once, without a checkpoint. Under SLURM with
Lightning's auto-requeue (``SLURMEnvironment``, on by default), SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``)
also requeues the job (``scontrol requeue``), as Lightning does; the requeued job resumes the run
directory by itself (:func:`slurm_requeued_checkpoint`).
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)

#: overrides a resume command leaves out: the run directory is the checkpoint's
_DROPPED = ("ckpt_path", "hydra.run.dir", "hydra.output_subdir", "run_dir")


class Preempted(Exception):
    """The run was stopped by a signal at ``step``. ``checkpoint``: the resumable checkpoint written
    (None without checkpointing); ``exit_code``: ``128 + signum``; ``resume``: the command that continues it."""

    def __init__(self, signum: int, step: int, run_dir: Path, checkpoint: Path | None):
        self.signum, self.step, self.run_dir, self.checkpoint = signum, step, Path(run_dir), checkpoint
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        if checkpoint is None:
            super().__init__(f"{name} at step {step}: stopped without a checkpoint (before the first training step, "
                             f"or trainer.enable_checkpointing=false)")
        else:
            super().__init__(f"{name} at step {step}: saved {checkpoint}; resume with: {self.resume}")

    @property
    def resume(self) -> str:
        return resume_command(self.run_dir)


def resume_command(run_dir: Path) -> str:
    """``lstm-pipeline train ckpt_path=<run_dir> <the overrides this run was given>`` (those of Hydra's
    command line when Hydra runs the command; none from Python), shell-quoted."""
    given: list[str] = []
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            given = list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - no Hydra run: the bare command
        given = []
    kept = [o for o in given if o.partition("=")[0].lstrip("+~") not in _DROPPED]
    return " ".join(["lstm-pipeline", "train", shlex.quote(f"ckpt_path={run_dir}"), *map(shlex.quote, kept)])


def _slurm_requeue_signal() -> int | None:
    """SIGUSR1 when SLURM runs this process with Lightning's auto-requeue (its convention), else None."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return signal.SIGUSR1 if SLURMEnvironment.detect() else None


class Preemption(L.Callback):
    """Catches SIGTERM, SIGINT (and SLURM's SIGUSR1) from the first training step on (in the main thread)
    and stops at the end of the step; ``checkpoint`` (the run's :class:`RunCheckpoint`, None without
    checkpointing) writes the resumable state."""

    def __init__(self, run_dir: Path, checkpoint=None):
        self.run_dir, self.checkpoint = Path(run_dir), checkpoint
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: now, without a checkpoint
        if self.signum is None:
            self.signum = signum
            log.warning("received %s: stopping at the end of this training step with a resumable checkpoint%s",
                        signal.Signals(signum).name, " (Ctrl-C again stops at once, without one)"
                        if signum == signal.SIGINT else "")

    def on_train_start(self, trainer, pl_module) -> None:
        # here, not in on_fit_start: Lightning installs its own handlers after on_fit_start
        if threading.current_thread() is not threading.main_thread():
            return
        wanted = [signal.SIGTERM, signal.SIGINT, _slurm_requeue_signal()]
        for signum in filter(None, wanted):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.signum is not None and not step_validates(trainer):
            self.stop(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        # with checkpointing, the run's checkpoint callback stops after its own saves (it runs last)
        if self.signum is not None and self.checkpoint is None and not trainer.sanity_checking:
            self.stop(trainer)

    def stop(self, trainer) -> None:
        """Write the resumable checkpoint of this step (requeue under SLURM) and raise :class:`Preempted`."""
        path = self.checkpoint.save_resumable(trainer) if self.checkpoint is not None else None
        if self.signum == signal.SIGUSR1 and trainer.is_global_zero:
            _requeue()
        raise Preempted(self.signum, trainer.global_step, self.run_dir, path)


def step_validates(trainer) -> bool:
    """Does the training step that just ended validate (Lightning's own test, ``trainer.should_stop`` included)?"""
    loop = trainer.fit_loop
    return bool(trainer.enable_validation and loop._data_fetcher is not None
                and loop.epoch_loop._should_check_val_fx(loop._data_fetcher))


def _requeue() -> None:
    """``scontrol requeue <job>`` as Lightning's SLURM auto-requeue does (array jobs: ``<array id>_<task id>``)."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ.get("SLURM_JOB_ID", "")
    if not job:
        return
    try:
        result = subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        result = None
    if result == 0:
        log.info("requeued SLURM job %s", job)
    else:
        log.warning("requeuing SLURM job %s failed (%s)", job, result)


def slurm_requeued_checkpoint(run_dir: Path) -> Path | None:
    """A SLURM job requeued (``SLURM_RESTART_COUNT`` > 0) whose run directory has a checkpoint: that run
    directory, to resume (Lightning's convention: a requeued job continues by itself). None otherwise."""
    if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) <= 0:
        return None
    return run_dir if (run_dir / "checkpoints" / "last.ckpt").is_file() else None
