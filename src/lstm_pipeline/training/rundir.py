"""One writer per run directory.

* :func:`claim_run_dir` (the ``train`` command, before Hydra writes anything): a new run gets a
  directory of its own, ``runs/<date>/<HH-MM-SS>`` or, when another run already took that name in
  the same second, ``<HH-MM-SS>-1``, ``-2`` ... (claimed with an atomic ``mkdir``). A directory named
  with ``hydra.run.dir=`` that already holds files is refused unless ``ckpt_path=`` resumes it, or a
  requeued SLURM job (``SLURM_RESTART_COUNT`` > 0) finds its checkpoint there: that job resumes it.
  A resume gets ``hydra.output_subdir=null``: Hydra does not rewrite the run's ``.hydra/`` files;
  :class:`RecordRun` writes them once training has really started, so a failed resume leaves them
  as they were.
* :class:`RunLock`: ``<run>/.lock``, held (``fcntl.flock``) while a run writes its directory; a
  second writer gets an error naming the holder's pid. The kernel drops the lock when the holder
  dies (kill -9 included), so a stale file never blocks.
* :class:`StartGuard`: what a run that fails before its first training step wrote into an existing
  directory is undone (new files removed, ``train.log`` cut back to its length).
* :func:`clean_stale_temp_files`: temporary files of a killed run (half-written checkpoints,
  tokenizer, model export) are removed at the next start, under the lock.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from datetime import datetime
from pathlib import Path

import lightning as L

from ..atomic import atomic_path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunDirError(ValueError):
    """A run directory is in use or already holds another run."""


# -- choosing the directory (before Hydra runs) -------------------------------------------------------
def _value(args: list[str], key: str) -> str | None:
    for a in args:
        k, sep, v = a.partition("=")
        if sep and k.lstrip("+") == key:
            return v
    return None


def claim_run_dir(args: list[str], now: datetime | None = None) -> list[str]:
    """The ``train`` command's overrides with the run directory settled (see the module docstring).

    Raises :class:`RunDirError` for ``hydra.run.dir=<a used directory>`` without ``ckpt_path``."""
    if any(a.startswith("-") for a in args):  # --help, --cfg, -m (multirun dirs are Hydra's): leave alone
        return args
    if any(os.environ.get(k, "0") not in ("", "0") for k in ("RANK", "LOCAL_RANK", "NODE_RANK")):
        return args  # a DDP worker: rank 0 settled the directory
    ckpt = _value(args, "ckpt_path")
    if ckpt and ckpt not in ("null", "None"):
        return args if _value(args, "hydra.output_subdir") is not None else [*args, "hydra.output_subdir=null"]
    given = _value(args, "hydra.run.dir")
    if given:
        path = Path(given).expanduser()
        try:
            path.mkdir(parents=True)
            _remove_at_exit_if_empty(path)
        except FileExistsError:
            from .preemption import slurm_requeued_checkpoint

            if slurm_requeued_checkpoint(path) is not None:  # Lightning's convention: a requeued job goes on
                log.warning("SLURM requeued this job (SLURM_RESTART_COUNT=%s): resuming %s",
                            os.environ.get("SLURM_RESTART_COUNT"), given)
                return [*args, f"ckpt_path={given}", "hydra.output_subdir=null"]
            if path.is_dir() and any(path.iterdir()):
                raise RunDirError(
                    f"hydra.run.dir={given} already holds a run ({', '.join(sorted(p.name for p in path.iterdir())[:4])}"
                    f"...). To continue that run pass ckpt_path={given}; to start a new one, name another "
                    f"directory or leave hydra.run.dir out.") from None
        return args
    now = now or datetime.now()
    parent = Path("runs") / now.strftime("%Y-%m-%d")
    parent.mkdir(parents=True, exist_ok=True)
    base = now.strftime("%H-%M-%S")
    for n in range(10000):
        candidate = parent / (base if n == 0 else f"{base}-{n}")
        try:
            candidate.mkdir()  # atomic: exactly one process creates it
        except FileExistsError:
            continue
        _remove_at_exit_if_empty(candidate, parent)
        return [*args, f"hydra.run.dir={candidate}"]
    raise RunDirError(f"could not find a free run directory under {parent}")


#: what Hydra and the data stage write into a run directory before training starts
BEFORE_TRAINING = {".hydra", "train.log", "tokenizer.json", LOCK_NAME, "components.json"}


def drop_unused_run_dir(cfg) -> None:
    """A new run that stopped on bad input before training would leave a run directory holding only
    Hydra's files (:data:`BEFORE_TRAINING`): remove it. A resumed run's directory is never touched."""
    try:
        run_dir = Path(str(cfg.run_dir))
        resumed = bool(cfg.get("ckpt_path"))
    except Exception:  # no run_dir in this config
        return
    if not resumed and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= BEFORE_TRAINING:
        shutil.rmtree(run_dir, ignore_errors=True)


def _remove_at_exit_if_empty(*paths: Path) -> None:
    """A run stopped by bad input before Hydra wrote anything (a misspelt key) leaves no empty directory."""
    import atexit

    def remove():
        for p in paths:
            try:
                p.rmdir()  # only if still empty
            except OSError:
                pass

    atexit.register(remove)


# -- the lock ------------------------------------------------------------------------------------------------
class RunLock:
    """``with RunLock(run_dir):`` holds ``<run_dir>/.lock`` or raises :class:`RunDirError` naming the holder."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            try:
                holder = self.path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise RunDirError(
                f"{self.path.parent} is being written by another run (pid {holder}, lock {self.path}): wait for it to "
                f"finish or stop it; to train at the same time, start a new run (leave hydra.run.dir and ckpt_path "
                f"out).") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clean_stale_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temporary files a killed run left (call with the lock held): ``.*.tmp*`` and ``.*.old-*``
    files and folders (half-written checkpoints, tokenizer, model exports) in the run directory, its
    checkpoints/ and model/ folders. Returns what was removed."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "model"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
    if removed:
        log.warning("removed %d temporary file(s) of an interrupted run: %s", len(removed),
                    ", ".join(str(p) for p in removed))
    return removed


# -- a failed start leaves the directory as it was ---------------------------------------------------
class StartGuard:
    """Snapshot of a run directory at start; :meth:`undo` removes what was added since and cuts
    ``train.log`` back, for a run that failed before its first training step."""

    LOG = "train.log"

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.before = {p for p in self.run_dir.rglob("*")} if self.run_dir.is_dir() else set()
        log_path = self.run_dir / self.LOG
        self.log_size = log_path.stat().st_size if log_path.is_file() else None

    def undo(self) -> None:
        if not self.run_dir.is_dir():
            return
        keep = {self.run_dir / LOCK_NAME, self.run_dir / ".hydra", self.run_dir / self.LOG}
        added = sorted((p for p in self.run_dir.rglob("*") if p not in self.before and p not in keep),
                       key=lambda p: len(p.parts), reverse=True)
        for p in added:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        log_path = self.run_dir / self.LOG
        if self.log_size is not None and log_path.is_file():
            for h in logging.getLogger().handlers:  # flush Hydra's file handler before cutting the file back
                h.flush()
            os.truncate(log_path, self.log_size)


# -- recording the config once training starts (resume) ----------------------------------------------------
class RecordRun(L.Callback):
    """Writes ``<run>/.hydra/{config,hydra,overrides}.yaml`` as Hydra does, when training starts. Used on
    resume (where Hydra is told not to write them): a resume that fails before training starts leaves
    the recorded files untouched, so a later plain resume composes the run as it was."""

    def __init__(self, run_dir: Path, cfg, write: bool = True):
        self.run_dir, self.cfg, self.write = Path(run_dir), cfg, write
        self.started = False  # training really started: a failure from now on is not a failed start

    def on_train_start(self, trainer, pl_module) -> None:
        if self.write and trainer.is_global_zero:
            record_hydra_files(self.run_dir, self.cfg)
        self.started = True


def hydra_records_itself() -> bool:
    """False when Hydra was told not to write ``.hydra/`` (a resume) or is not running (tests)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().output_subdir is not None


def record_hydra_files(run_dir: Path, cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    out = Path(run_dir) / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    files = {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": hc}),
             "overrides.yaml": OmegaConf.create(list(hc.overrides.task))}
    for name, node in files.items():
        with atomic_path(out / name) as tmp:
            OmegaConf.save(node, tmp)
