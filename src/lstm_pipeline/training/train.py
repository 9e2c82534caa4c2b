"""``train(cfg)``: the plain function behind ``lstm-pipeline train`` (no Hydra decorator here)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from ..artifacts.integrity import check_finite, json_safe
from ..atomic import atomic_path
from ..artifacts.model_dir import MODEL_DIRNAME, save_pretrained
from ..config.schema import to_dict
from ..data.datamodule import StreamDataModule
from ..data.pipeline import Corpus, prepare_corpus
from ..generation.generator import TextGenerator
from ..generation.pretrained import card_sample
from ..registry import CALLBACKS, run_components, write_provenance
from .checkpoint_io import AtomicCheckpointIO
from .module import LanguageModelTask
from .ntasgd import averaged_weights
from .preemption import Preempted, Preemption, step_validates
from .run_callbacks import batching_callbacks, run_callbacks
from .rundir import (
    RecordRun,
    RunDirError,
    RunLock,
    StartGuard,
    clean_stale_temp_files,
    hydra_records_itself,
)
from .safety import check_targets, load_checkpoint

log = logging.getLogger(__name__)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run directory (its checkpoints/last.ckpt) or a .ckpt file.

    A run directory whose ``last.ckpt`` is missing or unreadable (a run killed while nothing had
    replaced it yet, a damaged copy) resumes from its newest complete checkpoint instead, with a
    warning naming it. Raises ``FileNotFoundError`` when there is none."""
    p = Path(path).expanduser()
    if p.is_dir():
        last = p / "checkpoints" / "last.ckpt"
        if last.is_file() and _readable_checkpoint(last):
            return last
        candidates = sorted((c for c in (p / "checkpoints").glob("*.ckpt") if c != last and not c.name.startswith(".")),
                            key=lambda c: c.stat().st_mtime, reverse=True) if (p / "checkpoints").is_dir() else []
        for c in candidates:
            if _readable_checkpoint(c):
                log.warning("%s %s: resuming from %s, the newest complete checkpoint", last,
                            "is damaged" if last.is_file() else "is missing", c.name)
                return c
        raise FileNotFoundError(f"{p} has no checkpoints/last.ckpt (nor another complete checkpoint) to resume from.")
    if p.is_file():
        return p
    raise FileNotFoundError(f"ckpt_path={path} does not exist: pass a run directory or a .ckpt file.")


def _readable_checkpoint(path: Path) -> bool:
    """A complete zip-format checkpoint (torch.save's): its central directory is intact. Cheap (no tensor is read)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def run_dir_of_checkpoint(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def bos_token_id(tokenizer, eos_token: str | None = None) -> int:
    """The token whose state starts a text (see :func:`lstm_pipeline.artifacts.model_dir.special_tokens`)."""
    from ..artifacts.model_dir import special_tokens

    return special_tokens(tokenizer, eos_token)["bos_token_id"]


def _global_rank() -> int:
    """This process's rank before the Trainer exists (torchrun/SLURM/Lightning's launcher env)."""
    from lightning.fabric.utilities.rank_zero import _get_rank

    if "RANK" not in os.environ and int(os.environ.get("NODE_RANK", 0) or 0) > 0:
        return 1  # a later node under Lightning's own launcher: not the global rank 0
    return _get_rank() or 0


def _wait_for(path: Path, timeout: float = 1800.0) -> None:
    import time

    start = time.monotonic()
    while not path.is_file():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"rank {os.environ.get('RANK')} waited {timeout:.0f} s for rank 0 to write {path}")
        time.sleep(0.2)


class RunCheckpoint(ModelCheckpoint):
    """The run's ModelCheckpoint, whose state follows its run directory when that was copied or moved.

    Lightning restores its bookkeeping only when the recorded ``dirpath`` equals the current one;
    otherwise it drops the best score, the top-k and ``last_model_path`` (so the existing
    ``last.ckpt`` is a file it does not own and the new state goes to ``last-v1.ckpt``) and keeps a
    ``best_model_path`` into the old place. When the checkpoint resumed from lies in this callback's
    own directory, that directory was relocated: the recorded paths are moved along with it and the
    state loads exactly as in place. (Resuming another run's checkpoint into a new run directory
    keeps Lightning's behaviour.)"""

    def __init__(self, *args, resume_from: str | os.PathLike | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._resume_dir = os.path.dirname(os.path.realpath(resume_from)) if resume_from else None

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own key: checkpoints written with either class resume alike
        key = super().state_key
        return ModelCheckpoint.__qualname__ + key[len(type(self).__qualname__):]

    # last.ckpt is the run's latest state. Lightning (>= 2.5) rewrites it only at a validation that also
    # wrote a new best checkpoint, so an interrupted run, or one extended with a larger max_steps, went
    # back to the last *improvement*: here it is written after every validation. (Not when max_steps ends
    # training between validations: Lightning's loop state then says "epoch finished", and a resume from
    # it would restart the epoch's data; the last validation's checkpoint resumes exactly.)
    _last_saved_step: int | None = None

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_saved_step = trainer.global_step

    def _save_latest(self, trainer) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if (self.save_last and not trainer.fast_dev_run and not trainer.sanity_checking
                and trainer.state.fn == TrainerFn.FITTING and self._last_saved_step != trainer.global_step):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    #: the run's :class:`~.preemption.Preemption`: a signal received stops the run after this callback's saves
    preemption = None
    _deferred_snapshot = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # a snapshot (every_n_train_steps) of a step that validates is written after the validation: a
        # resume from a checkpoint written before it would skip it (Lightning's restart), and with it the
        # best checkpoint, NT-ASGD's trigger and a plateau schedule's step of the uninterrupted run
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if due and not self._should_skip_saving_checkpoint(trainer) and step_validates(trainer):
            self._deferred_snapshot = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._deferred_snapshot and not trainer.sanity_checking:
            self._deferred_snapshot = False
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        self._save_latest(trainer)
        if self.preemption is not None and self.preemption.signum is not None and not trainer.sanity_checking:
            self.preemption.stop(trainer)

    def save_resumable(self, trainer) -> Path:
        """The checkpoint of this step that ``ckpt_path=<run dir>`` resumes (``last.ckpt``; written now unless
        it already holds this step); returns its path."""
        path = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        if self._last_saved_step == trainer.global_step and path.is_file():
            return path
        if self.save_last:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return Path(self.last_model_path or path)
        trainer.save_checkpoint(path)
        return path

    def load_state_dict(self, state_dict: dict) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath and self._resume_dir == self.dirpath:
            def move(path):
                return os.path.join(self.dirpath, os.path.basename(path)) if path and os.path.dirname(path) == old \
                    else path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_k_models": {move(p): v for p, v in state_dict.get("best_k_models", {}).items()},
                          **{k: move(state_dict[k]) for k in ("best_model_path", "kth_best_model_path",
                                                                "last_model_path") if k in state_dict}}
        super().load_state_dict(state_dict)


def build_callbacks(cfg: DictConfig, run_dir: Path, resume_from: Path | None = None
                    ) -> tuple[list, ModelCheckpoint | None]:
    """The run's checkpoint policy (``checkpoint.*``; none with ``trainer.enable_checkpointing=false``),
    validation at the last step, the progress bar, then the configured callbacks."""
    trainer_cfg = to_dict(cfg.trainer) or {}
    ckpt_cb = None
    if trainer_cfg.get("enable_checkpointing", True) is not False:
        policy = dict(to_dict(cfg.get("checkpoint")) or {})  # its defaults: config.py TrainJob.checkpoint
        ckpt_cb = RunCheckpoint(dirpath=run_dir / "checkpoints", resume_from=resume_from, **policy)
    callbacks = [c for c in (ckpt_cb, *run_callbacks(trainer_cfg)) if c is not None]
    for key, node in (to_dict(cfg.callbacks) or {}).items():
        if node is None:
            continue
        callbacks.append(instantiate(node) if "_target_" in node else CALLBACKS.build(node))
    return callbacks, ckpt_cb


def build_logger(node):
    """``logger=<name>``; an optional logger whose package is missing is a clear error, not a traceback."""
    if not node:
        return False
    try:
        return instantiate(node)
    except Exception as exc:  # hydra wraps the ImportError of a missing optional package
        cause = exc
        while cause is not None and not isinstance(cause, ImportError):
            cause = cause.__cause__
        if cause is not None:
            raise ValueError(str(cause)) from exc
        raise


#: what a run directory holds once a run has used it (Hydra's files and the lock alone do not count)
RUN_OUTPUTS = ("checkpoints", "model", "logs", "tokenizer.json")


def order_adaptive_output(model, corpus, tokenizer_name: str | None) -> str | None:
    """model.output=adaptive: cut the clusters on the train split's token frequencies (the buffer
    ``adaptive_rank``, saved with the weights; a resume restores the checkpoint's). Returns how the
    order was made (recorded in config.json as ``adaptive_order``), None for a full softmax."""
    if getattr(model, "adaptive", None) is None:
        return None
    if corpus.streaming:  # no encoded train split to count: the tokenizer's ids are the order
        if tokenizer_name != "word":
            log.warning("model.output=adaptive with a streaming data source: the clusters follow the tokenizer's "
                        "ids, which only tokenizer=word numbers by frequency; cut on frequency by training from "
                        "a non-streaming source (data.streaming=false)")
        return "token ids (streaming source: not counted)"
    import numpy as np

    ids = corpus.ids["train"]
    counts = np.zeros(model.vocab_size, dtype=np.int64)
    for start in range(0, len(ids), 1 << 24):  # in chunks: a memmap of a large corpus stays on disk
        counts += np.bincount(np.asarray(ids[start:start + (1 << 24)], dtype=np.int64), minlength=model.vocab_size)
    model.set_frequency_order(counts)
    return "train split token frequency (buffer adaptive_rank in model.safetensors)"


def trainer_arguments(cfg: DictConfig, announce: bool = True) -> dict:
    """``cfg.trainer`` as ``lightning.Trainer`` arguments: ``budget`` becomes ``max_time`` (in seconds)
    for a run without a step limit (``trainer.max_steps=N`` asks for N steps: the budget, the default
    recipe's included, then does not cut it short, and the log says so), and ``precision: auto`` the
    precision this device computes best in (its reason logged once when ``announce``)."""
    from .budget import auto_precision, parse_budget

    args = dict(to_dict(cfg.trainer))
    if cfg.get("budget") is not None:
        steps = args.get("max_steps")
        if steps is not None and steps > 0:
            if announce:
                log.info("budget=%s not applied: trainer.max_steps=%d bounds this run (add trainer.max_steps=-1 to "
                         "train for the budget, or trainer.max_time=... for both limits)", cfg.budget, steps)
        else:
            args["max_time"] = {"seconds": parse_budget(cfg.budget)}
    if args.get("precision") == "auto":
        args["precision"], reason = auto_precision(args.get("accelerator"))
        if announce:
            log.info("precision %s (trainer.precision=auto): %s", args["precision"], reason)
    return args


def check_model_matches(task: L.LightningModule, ckpt_state: dict, ckpt: Path) -> None:
    """A resume whose model settings differ from the checkpoint's: one line naming the first differing
    weight, before Lightning fails with a traceback half-way through restoring."""
    have = task.state_dict()
    saved = ckpt_state.get("state_dict") or {}
    for name in sorted(set(have) | set(saved)):
        a, b = saved.get(name), have.get(name)
        if a is None or b is None or tuple(a.shape) != tuple(b.shape):
            shapes = f"{tuple(a.shape) if a is not None else 'absent'} in the checkpoint, " \
                     f"{tuple(b.shape) if b is not None else 'absent'} with these settings"
            raise ValueError(
                f"ckpt_path={ckpt}: the checkpoint's model does not match this command's model settings ({name}: "
                f"{shapes}). Resume with the run's own model settings (drop the model.* overrides), or start a new run.")


def train(cfg: DictConfig) -> dict:
    """Train (or resume, ``cfg.ckpt_path``) into ``cfg.run_dir``, export the model, print the sample;
    returns the final metrics (``{name: float}``; ``best_val_loss`` when a best checkpoint was kept).

    The stages, in order: :func:`open_run` (the run directory and its lock), :func:`prepare_data`,
    :func:`build_task`, :func:`fit`, then on the global rank 0 :func:`export_model` and :func:`print_sample`.
    The run directory has one writer: its lock is held throughout (:class:`~.rundir.RunLock`), a new
    run refuses a directory another run used, and a run that fails before its first training step
    leaves the directory as it found it. Raises ``ValueError`` subclasses (one line each) for bad input,
    :class:`~.preemption.Preempted` when SIGTERM/SIGINT stopped the run (its checkpoint saved, nothing exported).
    ``cfg`` is checked by its caller (``config.checks.check("train", cfg)``: the CLI and ``api.train``);
    the ``_target_`` allow-list is applied here too, where the config is built: a config is data, not code."""
    check_targets(cfg, "the train config")
    with open_run(cfg) as run:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        logger = build_logger(cfg.logger)  # before the data: a missing logger package fails at once
        data = prepare_data(cfg, run)
        task = build_task(cfg, run, data)
        fitted = fit(cfg, run, data, task, logger)
        if fitted.is_global_zero:
            out = export_model(cfg, run, data, fitted)
            print_sample(cfg, out)
    return fitted.metrics


@dataclass
class RunSession:
    """An open run directory (:func:`open_run`): ``record`` is None on ranks other than the global 0."""
    cfg: DictConfig
    run_dir: Path
    ckpt: Path | None           # the checkpoint resumed from
    holder: dict                # {"state": the resumed checkpoint}, handed on to build_task, then dropped
    record: RecordRun | None

    @property
    def is_rank_zero(self) -> bool:
        return self.record is not None


@contextlib.contextmanager
def open_run(cfg: DictConfig) -> Iterator[RunSession]:
    """Resolve ``cfg.ckpt_path``, create ``cfg.run_dir`` and hold its lock while the block runs. Raises
    :class:`~.rundir.RunDirError` for a directory another run uses, ``FileNotFoundError`` for a missing
    checkpoint; a block that fails before the first training step leaves the directory as it was."""
    ckpt = resolve_checkpoint(cfg.ckpt_path) if cfg.ckpt_path else None
    # refused (one line) before anything is prepared if it is not plain weights
    ckpt_state = {"state": load_checkpoint(ckpt)} if ckpt is not None else {}  # handed on, then dropped
    run_dir = Path(cfg.run_dir)
    existed = run_dir.is_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    if _global_rank() != 0:
        yield RunSession(cfg, run_dir, ckpt, ckpt_state, None)
        return
    try:
        lock = RunLock(run_dir).acquire()
    except RunDirError:
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        _check_run_dir_free(run_dir, ckpt)
        guard = StartGuard(run_dir)
        clean_stale_temp_files(run_dir)
        record = RecordRun(run_dir, cfg, write=not hydra_records_itself())
        try:
            yield RunSession(cfg, run_dir, ckpt, ckpt_state, record)
        except BaseException:
            if not record.started:
                guard.undo()  # a failed start or resume leaves the directory as it was
            raise
    finally:
        lock.release()


def _check_run_dir_free(run_dir: Path, ckpt: Path | None) -> None:
    used = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if used and ckpt is not None and run_dir.resolve() != run_dir_of_checkpoint(ckpt).resolve():
        raise RunDirError(
            f"{run_dir} already holds another run ({', '.join(used)}) than the one of ckpt_path={ckpt}: resume "
            f"into the checkpoint's own run directory (leave hydra.run.dir out) or into a new directory.")
    if ckpt is None and used:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(used)}): pass ckpt_path={run_dir} to continue it, or "
            f"train into a new directory (leave hydra.run.dir/run_dir out).")


@dataclass
class PreparedData:
    """The encoded corpus (with its tokenizer) and the datamodule batching it (``batching.*``)."""
    corpus: Corpus
    datamodule: StreamDataModule

    @property
    def tokenizer(self):
        return self.corpus.tokenizer


def prepare_data(cfg: DictConfig, run: RunSession) -> PreparedData:
    """Encode ``cfg.data`` with the run's tokenizer: the one of the run resumed (or already in the run
    directory), else one trained now and saved as ``<run>/tokenizer.json`` (atomically; other ranks wait
    for rank 0's). Rank 0 also writes ``components.json``. Raises :class:`~..data.sources.DataError`."""
    run_dir, ckpt = run.run_dir, run.ckpt
    # reuse the tokenizer of the run being resumed (or of this run dir, if it already has one)
    tok_path = run_dir / "tokenizer.json"
    if ckpt is not None and not tok_path.is_file():
        tok_path = run_dir_of_checkpoint(ckpt) / "tokenizer.json"
    if run.is_rank_zero:  # components.json: the distribution that provided each component (registry.provenance)
        write_provenance(run_dir, to_dict(cfg))
    else:
        # every rank must use rank 0's tokenizer: some trainers (Unigram) are not deterministic
        _wait_for(tok_path)
    corpus = prepare_corpus(to_dict(cfg.data), to_dict(cfg.tokenizer), tokenizer_path=tok_path)
    if run.is_rank_zero and not (run_dir / "tokenizer.json").is_file():
        with atomic_path(run_dir / "tokenizer.json") as tmp:  # other ranks never read half a file
            corpus.tokenizer.save(tmp)
    return PreparedData(corpus, StreamDataModule(corpus, **to_dict(cfg.batching)))


def build_task(cfg: DictConfig, run: RunSession, data: PreparedData) -> LanguageModelTask:
    """The model and its training loop for ``cfg.model``/``optim``/``scheduler``; model.output=adaptive
    clusters cut on the train split (:func:`order_adaptive_output`, recorded as ``task.adaptive_order``).
    A resume whose model settings differ from the checkpoint's raises ``ValueError`` (one line)."""
    corpus = data.corpus
    task = LanguageModelTask(
        model=to_dict(cfg.model), vocab_size=data.tokenizer.vocab_size, optim=to_dict(cfg.optim),
        scheduler=to_dict(cfg.scheduler),
        chars_per_token={s: corpus.chars_per_token(s) for s in corpus.ids},
    )
    task.adaptive_order = order_adaptive_output(task.model, corpus, to_dict(cfg.tokenizer).get("name"))
    ckpt_state = run.holder.pop("state", None)  # not kept in memory while training: Lightning reads the file again
    if ckpt_state is not None:
        check_model_matches(task, ckpt_state, run.ckpt)
        del ckpt_state
    return task


@dataclass
class FitResult:
    """What :func:`fit` leaves: the trainer, its checkpoint callback (None without checkpointing) and
    the final metrics (``{name: float}``, Lightning's callback metrics)."""
    trainer: L.Trainer
    checkpoint: ModelCheckpoint | None
    metrics: dict

    @property
    def is_global_zero(self) -> bool:
        return self.trainer.is_global_zero


def fit(cfg: DictConfig, run: RunSession, data: PreparedData, task: LanguageModelTask, logger) -> FitResult:
    """Fit ``task`` on ``data`` (resuming ``run.ckpt``) with the run's callbacks: its checkpoints, those of
    :mod:`.run_callbacks` (NT-ASGD's averaging: the task ends holding the averaged weights), the
    configured ones and those the batching needs, and :class:`~.preemption.Preemption` (a signal stops the
    run at the end of its step with a resumable checkpoint: raises :class:`~.preemption.Preempted`).
    Only fits: nothing is exported here."""
    callbacks, ckpt_cb = build_callbacks(cfg, run.run_dir, resume_from=run.ckpt)
    callbacks += batching_callbacks(to_dict(cfg.batching))  # e.g. the learning-rate scaling of variable-length BPTT
    if run.record is not None:
        callbacks.append(run.record)
    # last (the checkpoint callback aside, which Lightning runs after all others): at a signal, every other
    # callback (NT-ASGD's averaging, the configured ones) has finished the step before it is saved
    callbacks.append(preemption := Preemption(run.run_dir, ckpt_cb))
    if ckpt_cb is not None:
        ckpt_cb.preemption = preemption
    trainer = L.Trainer(**trainer_arguments(cfg, announce=run.is_rank_zero), default_root_dir=str(run.run_dir),
                        callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()], use_distributed_sampler=False)
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        trainer.fit(task, datamodule=data.datamodule, ckpt_path=str(run.ckpt) if run.ckpt else None, weights_only=True)
    except SIGTERMException as exc:  # Lightning's own handler (before the first step; another rank's): a SystemExit(0)
        raise Preempted(signal.SIGTERM, trainer.global_step, run.run_dir, None) from exc
    return FitResult(trainer, ckpt_cb, {k: float(v) for k, v in trainer.callback_metrics.items()})


def load_best_weights(task: LanguageModelTask, fitted: FitResult) -> None:
    """Put the best checkpoint's weights in ``task`` (NT-ASGD: its averaged ones, those it was validated
    with) and add its score to ``fitted.metrics`` as ``best_val_loss``. Without a best checkpoint (no
    validation ran) the task keeps the weights fit ended with."""
    ckpt_cb = fitted.checkpoint
    best = ckpt_cb.best_model_path if ckpt_cb is not None else None
    if not best or not Path(best).is_file():
        return
    best_ckpt = load_checkpoint(best)
    task.load_state_dict(best_ckpt["state_dict"])
    averaged = averaged_weights(best_ckpt)
    if averaged:
        task.load_state_dict(averaged, strict=False)
    score = ckpt_cb.best_model_score
    if score is None:  # not restored (resumed into another run directory): the best checkpoint has it
        state = (best_ckpt.get("callbacks") or {}).get(ckpt_cb.state_key) or {}
        score = state.get("best_model_score")
    if score is not None:
        fitted.metrics["best_val_loss"] = float(score)


def export_model(cfg: DictConfig, run: RunSession, data: PreparedData, fitted: FitResult) -> Path:
    """Write the best weights as ``<run>/model`` (:func:`~..artifacts.model_dir.save_pretrained`, with the
    card's sample) and print where; returns that directory. Artefacts derived from an earlier export
    (``export/``, ``eval*.json``) are moved to ``stale/`` when the weights changed (:func:`retire_stale`).
    A model with NaN/inf weights is refused (``ValueError``), never exported."""
    task, run_dir, result = fitted.trainer.lightning_module, run.run_dir, fitted.metrics
    load_best_weights(task, fitted)
    model = task.model.cpu().eval()
    check_finite(model, f"not exporting the model of {run_dir}")  # a NaN model is never exported
    metrics = json_safe({k: v for k, v in result.items() if k.startswith("val_")})  # valid JSON: no NaN literals
    previous = run_dir / MODEL_DIRNAME / "config.json"
    if not metrics and previous.is_file():  # nothing validated now (resumed with no steps left): keep the export's
        metrics = json.loads(previous.read_text()).get("metrics") or {}
    adaptive_order = getattr(task, "adaptive_order", None)
    before = _weights_digest(run_dir / MODEL_DIRNAME)
    out = save_pretrained(model, to_dict(cfg.model), data.tokenizer, run_dir / MODEL_DIRNAME, extra={
        "eos_token": data.corpus.eos_token, "metrics": metrics, "components": run_components(to_dict(cfg)),
        "data": to_dict(cfg.data), "tokenizer": to_dict(cfg.tokenizer), "sample": to_dict(cfg.sample),
        "chat_template": cfg.get("chat_template"), **({"adaptive_order": adaptive_order} if adaptive_order else {})}, sample=card_sample)
    if before is not None and before != _weights_digest(out):
        retire_stale(run_dir)
    log.info("exported model to %s", out)
    print(f"\nRun directory: {run_dir}\nExported model: {out}")
    if "val_bpc" in result:
        print(f"val_loss {result['val_loss']:.4f}  val_bpc {result['val_bpc']:.4f}")
    return out


def print_sample(cfg: DictConfig, model_dir: Path) -> None:
    """The end-of-run sample (``cfg.sample``; none when ``max_new_tokens`` is 0), generated to stdout
    from the exported ``model_dir`` as a user would, through the one generation entry point."""
    if cfg.sample.max_new_tokens <= 0:
        return
    print(f"\n--- sample (temperature {cfg.sample.temperature}) ---")
    TextGenerator.load(model_dir).generate(
        cfg.sample.prompt, decoding={"name": "sample", "temperature": cfg.sample.temperature},
        max_new_tokens=cfg.sample.max_new_tokens, seed=cfg.seed, on_unknown="replace", stream=sys.stdout)


#: artefacts a run directory holds that were derived from its exported model (``export``, ``evaluate``)
DERIVED_ARTEFACTS = ("export/*.onnx", "export/model.step*.pt", "eval.json", "eval-*.json")


def _weights_digest(model_dir: Path) -> str | None:
    """sha256 of ``model_dir``'s weight files (None when it has none: nothing exported yet)."""
    files = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def retire_stale(run_dir: Path) -> list[Path]:
    """Move the artefacts derived from a previous model of ``run_dir`` (:data:`DERIVED_ARTEFACTS`) into
    ``<run>/stale/<UTC date-time>/`` (same relative paths), with one warning naming them; returns their
    new paths ([] when there were none)."""
    found = sorted({p for pattern in DERIVED_ARTEFACTS for p in run_dir.glob(pattern) if p.is_file()})
    if not found:
        return []
    dest = run_dir / "stale" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    moved = []
    for p in found:
        target = dest / p.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
        moved.append(target)
    log.warning("%s was rewritten: moved what was derived from the previous model (%s) to %s; re-run export/"
                "evaluate for the new one", run_dir / MODEL_DIRNAME, ", ".join(str(p.relative_to(run_dir)) for p in found),
                dest)
    return moved
