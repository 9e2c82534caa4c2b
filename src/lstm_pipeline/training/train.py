"""``train(cfg)``: the plain function behind ``lstm-pipeline train`` (no Hydra decorator here)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from ..config import to_dict, validate_train_config
from ..data.datamodule import StreamDataModule
from ..data.pipeline import prepare_corpus
from ..generation.strategies import Sample
from ..generation.streamer import TextStreamer
from ..hub import MODEL_DIRNAME, load_pretrained, save_pretrained
from ..registry import CALLBACKS
from .checkpoint_io import AtomicCheckpointIO
from .malloc import tune_malloc
from .module import LanguageModelTask

log = logging.getLogger(__name__)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run directory (its checkpoints/last.ckpt) or a .ckpt file."""
    p = Path(path).expanduser()
    if p.is_dir():
        last = p / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise FileNotFoundError(f"{p} has no checkpoints/last.ckpt to resume from.")
    if p.is_file():
        return p
    raise FileNotFoundError(f"ckpt_path={path} does not exist: pass a run directory or a .ckpt file.")


def run_dir_of_checkpoint(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def bos_token_id(tokenizer) -> int:
    """The token whose state starts a text: a newline for character models (byte-level ones
    spell it "Ċ"), else an end-of-text token (word, wordpiece and pretrained tokenizers), else 0."""
    for tok in ("\n", "Ċ", "<eos>", "</s>", "<|endoftext|>", "[SEP]", "<s>", "[CLS]"):
        tid = tokenizer.token_to_id(tok)
        if tid is not None:
            return tid
    return 0


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


def build_callbacks(cfg: DictConfig, run_dir: Path) -> tuple[list, ModelCheckpoint]:
    ckpt_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{step}", monitor="val_loss",
                              mode="min", save_top_k=1, save_last=True)
    callbacks = [ckpt_cb]
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


def train(cfg: DictConfig) -> dict:
    validate_train_config(cfg)
    tune_malloc()
    # Lightning prints through its own handler; stop a second copy through Hydra's root handler
    logging.getLogger("lightning.pytorch").propagate = False
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    ckpt = resolve_checkpoint(cfg.ckpt_path) if cfg.ckpt_path else None
    # reuse the tokenizer of the run being resumed (or of this run dir, if it already has one)
    tok_path = run_dir / "tokenizer.json"
    if ckpt is not None and not tok_path.is_file():
        tok_path = run_dir_of_checkpoint(ckpt) / "tokenizer.json"
    is_rank_zero = _global_rank() == 0
    if not is_rank_zero:
        # every rank must use rank 0's tokenizer: some trainers (Unigram) are not deterministic
        _wait_for(tok_path)
    corpus = prepare_corpus(to_dict(cfg.data), to_dict(cfg.tokenizer), tokenizer_path=tok_path)
    tokenizer = corpus.tokenizer
    if is_rank_zero and not (run_dir / "tokenizer.json").is_file():
        tmp = run_dir / f".tokenizer.json.tmp-{os.getpid()}"
        tokenizer.save(tmp)
        os.replace(tmp, run_dir / "tokenizer.json")  # atomic: other ranks never read half a file

    model_cfg = to_dict(cfg.model)
    task = LanguageModelTask(
        model=model_cfg, vocab_size=tokenizer.vocab_size, optim=to_dict(cfg.optim),
        scheduler=to_dict(cfg.scheduler),
        chars_per_token={s: corpus.chars_per_token(s) for s in corpus.ids},
    )
    dm = StreamDataModule(corpus, **to_dict(cfg.batching))
    callbacks, ckpt_cb = build_callbacks(cfg, run_dir)
    callbacks += dm.callbacks()  # e.g. the learning-rate scaling of variable-length BPTT
    logger = build_logger(cfg.logger)
    trainer = L.Trainer(**to_dict(cfg.trainer), default_root_dir=str(run_dir), callbacks=callbacks, logger=logger,
                        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False)
    trainer.fit(task, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=False)

    result = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if not trainer.is_global_zero:
        return result
    # export the best checkpoint's weights (the last ones when no validation ran)
    best = ckpt_cb.best_model_path
    if best and Path(best).is_file():
        best_ckpt = torch.load(best, map_location="cpu", weights_only=False)
        task.load_state_dict(best_ckpt["state_dict"])
        # NT-ASGD: the averaged weights (those the checkpoint was validated with) are the model
        averaged = best_ckpt.get("lstm_pipeline", {}).get("averaged_weights")
        if averaged:
            task.load_state_dict(averaged, strict=False)
        result["best_val_loss"] = float(ckpt_cb.best_model_score)
    else:
        opt = task._ntasgd()
        if opt is not None and opt.averaging:
            opt.swap_averaged()
    model = task.model.cpu().eval()
    metrics = {k: v for k, v in result.items() if k.startswith("val_")}
    out = save_pretrained(model, model_cfg, tokenizer, run_dir / MODEL_DIRNAME, extra={
        "bos_token_id": bos_token_id(tokenizer), "metrics": metrics,
        "data": to_dict(cfg.data), "tokenizer": to_dict(cfg.tokenizer), "sample": to_dict(cfg.sample)})
    log.info("exported model to %s", out)
    print(f"\nRun directory: {run_dir}\nExported model: {out}")
    if "val_bpc" in result:
        print(f"val_loss {result['val_loss']:.4f}  val_bpc {result['val_bpc']:.4f}")
    if cfg.sample.max_new_tokens > 0:
        print(f"\n--- sample (temperature {cfg.sample.temperature}) ---")
        model, tokenizer, config = load_pretrained(out)  # sample from what was written, as a user will
        prompt = cfg.sample.prompt
        ids = tokenizer.encode_checked(prompt, on_unknown="skip")
        Sample(temperature=cfg.sample.temperature).generate(
            model, [ids], max_new_tokens=cfg.sample.max_new_tokens, bos_token_id=config["bos_token_id"],
            streamer=TextStreamer(tokenizer, sys.stdout, prompt=prompt),
            generator=torch.Generator().manual_seed(cfg.seed))
    return result
