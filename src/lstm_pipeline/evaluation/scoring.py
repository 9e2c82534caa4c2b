"""Scoring an exported model on token ids: loss, perplexity and bits per token of each split,
with the recurrent state carried across the whole split (contiguous streams); used by ``lstm-pipeline evaluate`` (:mod:`lstm_pipeline.commands.evaluate`), which adds:

* a per-token log-probability dump (``dump_logprobs=true``: ``<run>/eval/<split>.logprobs.tsv``);
* dynamic evaluation (``dynamic_eval.enabled=true``, see ``lstm_pipeline.evaluation.dynamic``);
* the neural cache pointer (``cache.enabled=true``, see ``lstm_pipeline.evaluation.cache``);
* generation-quality metrics of sampled continuations (``generation.enabled=true``).

The JSON report goes to ``<run>/eval.json`` (or ``report=<path>``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..data.sources import DataError
from .metrics import ScoreTotals
from .stream import carried_windows


@torch.no_grad()
def evaluate_ids(model, ids, batch_size: int = 16, bptt: int = 256, device: str = "cpu",
                 return_logprobs: bool = False, chars_per_token: float | None = None) -> dict:
    """The carried-state pass (:func:`.stream.carried_windows`) over ``ids`` (N,): :func:`.metrics.loss_metrics`
    of its targets (``bpc`` too, given ``chars_per_token``) plus ``acc`` (argmax accuracy). With ``return_logprobs``, ``logprobs`` (N',) and
    ``positions`` (N',) give the log-probability (nats) of each scored token ``ids[position]``, in text order."""
    model = model.to(device).eval()
    totals = ScoreTotals(device)
    rows, positions = [], []
    for w in carried_windows(model, ids, batch_size, bptt, device):
        logp = totals.add(w.out, w.y)  # (B, T)
        if return_logprobs:
            rows.append(logp.cpu())
            positions.append(w.positions)
    out = ScoreTotals.metrics(totals.totals, chars_per_token)
    if return_logprobs:  # row-major: stream b after stream b - 1, each in order
        out["logprobs"] = torch.cat(rows, 1).reshape(-1).numpy()
        out["positions"] = np.concatenate(positions, 1).reshape(-1)
    return out


def write_logprobs(path: Path, ids, positions, logprobs, tokenizer) -> None:
    with atomic_write(path) as f:  # whole or not at all
        f.write("position\ttoken_id\ttoken\tlogprob\n")
        for pos, lp in zip(positions.tolist(), logprobs.tolist()):
            tid = int(ids[pos])
            f.write(f"{pos}\t{tid}\t{json.dumps(tokenizer.tk.id_to_token(tid))}\t{lp:.6f}\n")


def generation_quality(model, tokenizer, config: dict, gen_cfg: dict, device: str = "cpu") -> dict:
    from ..generation.generator import TextGenerator
    from .generation_metrics import generation_report

    if gen_cfg["num_samples"] < 2:
        raise ValueError("generation.num_samples must be >= 2 (self-BLEU compares samples with each other)")
    gen = TextGenerator(model.to(device), tokenizer, config)
    decoder = gen.decoder(dict(gen_cfg["decoding"]))
    done = gen.generate([gen_cfg["prompt"]] * gen_cfg["num_samples"], decoding=decoder,
                        max_new_tokens=gen_cfg["max_new_tokens"], seed=int(gen_cfg["seed"]), what="generation.prompt")
    logprob_sums = [c.score for c in done] if decoder.scores_are_logprob_sums else None  # beam scores are not
    report = generation_report([c.tokens for c in done], logprob_sums, gen_cfg["max_n"])
    report["decoding"] = dict(gen_cfg["decoding"])
    report["examples"] = [c.prompt + c.text for c in done[:3]]
    return report


def recorded_data(model_dir: Path, config: dict) -> dict:
    """The ``data`` block a model recorded, used only when it is the run's own and local.

    A model's ``config.json`` is data someone else may have written: its ``data`` block names files
    to read and cache folders to write. It is followed only when the model directory is the
    ``model/`` folder of a local training run (``<run>/.hydra/config.yaml`` exists, the model is not
    in the Hugging Face cache) and the block is the one that run was trained with (equal to the
    run's ``.hydra/config.yaml``). Otherwise :class:`DataError` asks for ``data=``."""
    from omegaconf import OmegaConf

    model_dir = Path(model_dir).resolve()
    recorded = config.get("data")
    ask = (f"Pass the data to evaluate on: data=text data.path=<file> (or another data preset, e.g. "
           f"data=shakespeare).")
    if not recorded:
        raise DataError(f"{model_dir}/config.json does not record its data. {ask}")
    run_config = model_dir.parent / ".hydra" / "config.yaml"
    reason = None
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        in_hub_cache = Path(HF_HUB_CACHE).resolve() in model_dir.parents
    except Exception:  # no huggingface_hub: nothing can have been downloaded by it
        in_hub_cache = False
    if in_hub_cache:
        reason = "it was downloaded (it lies in the Hugging Face cache)"
    elif model_dir.name != "model" or not run_config.is_file():
        reason = "it is not the model/ folder of a training run (no .hydra/config.yaml beside it)"
    else:
        try:
            own = OmegaConf.to_container(OmegaConf.load(run_config).get("data"), resolve=True)
        except Exception:
            own = None
        if own != recorded:
            reason = f"its config.json data block is not the one in {run_config}"
    if reason:
        raise DataError(f"{model_dir}: the data recorded in its config.json is not used, because {reason}. {ask}")
    return recorded
