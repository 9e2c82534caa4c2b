"""``evaluate(cfg)``: loss, perplexity and bits per character of an exported model on each split,
with the recurrent state carried across the whole split (contiguous streams), and optionally:

* a per-token log-probability dump (``dump_logprobs=true``: ``<run>/eval/<split>.logprobs.tsv``);
* dynamic evaluation (``dynamic_eval.enabled=true``, see ``lstm_pipeline.eval.dynamic``);
* the neural cache pointer (``cache.enabled=true``, see ``lstm_pipeline.eval.cache``);
* generation-quality metrics of sampled continuations (``generation.enabled=true``).

The JSON report goes to ``<run>/eval.json`` (or ``report=<path>``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from .config import to_dict
from .data.batching import StreamBatches
from .data.pipeline import prepare_corpus
from .data.sources import DataError
from .eval import loss_metrics
from .hub import load_pretrained, resolve_pretrained
from .integrity import json_safe


@torch.no_grad()
def evaluate_ids(model, ids, batch_size: int = 16, bptt: int = 256, device: str = "cpu",
                 return_logprobs: bool = False) -> dict:
    """Carried-state evaluation. With ``return_logprobs``, ``logprobs`` (N,) and ``positions`` (N,)
    give the log-probability (nats) of each scored token ``ids[position]``, in text order."""
    batches = StreamBatches(ids, batch_size, bptt, split="eval")
    model = model.to(device).eval()
    state, nll, correct, count = None, 0.0, 0, 0
    rows = []
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits, state = model(x, state)  # (B, T, V)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, y[..., None]).squeeze(-1)  # (B, T)
        nll -= logp.double().sum().item()
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
        if return_logprobs:
            rows.append(logp.cpu())
    out = {**loss_metrics(nll, count), "acc": correct / count}
    if return_logprobs:
        # stream b holds ids[b*L : b*L+L+1]; its t-th target is ids[b*L + t + 1]
        out["logprobs"] = torch.cat(rows, 1).reshape(-1).numpy()
        L = batches.stream_len
        out["positions"] = (np.arange(batch_size)[:, None] * L + np.arange(L)[None, :] + 1).reshape(-1)
    return out


def write_logprobs(path: Path, ids, positions, logprobs, tokenizer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("position\ttoken_id\ttoken\tlogprob\n")
        for pos, lp in zip(positions.tolist(), logprobs.tolist()):
            tid = int(ids[pos])
            f.write(f"{pos}\t{tid}\t{json.dumps(tokenizer.tk.id_to_token(tid))}\t{lp:.6f}\n")


def generation_quality(model, tokenizer, config: dict, gen_cfg: dict, device: str = "cpu") -> dict:
    from .eval.generation_metrics import generation_report
    from .generation.engine import TextGenerator

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


def _data_tag(data_cfg: dict) -> str:
    """A file-name tag for data other than the run's own: its name and a hash of its settings, so that
    scoring other data never overwrites ``eval.json`` (the run's own) nor another data set's report."""
    import hashlib

    digest = hashlib.sha1(json.dumps(data_cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{data_cfg.get('name', 'data')}-{digest}"


def evaluate(cfg: DictConfig) -> dict:
    from .eval.cache import cache_evaluate
    from .eval.dynamic import dynamic_evaluate

    __import__("lstm_pipeline.validation").validation.check_positive_settings(cfg, "batch_size", "bptt")
    model_dir = resolve_pretrained(cfg.run)  # a run, a model directory, or a Hub repo id (cached or downloaded)
    model, tokenizer, config = load_pretrained(model_dir, map_location=cfg.device)
    data_cfg = to_dict(cfg.data) or recorded_data(model_dir, config)
    corpus = prepare_corpus(data_cfg, {}, tokenizer_path=model_dir / "tokenizer.json")
    run_dir = Path(model_dir).parent if Path(model_dir).name == "model" else Path(model_dir)
    dyn, cache = to_dict(cfg.dynamic_eval), to_dict(cfg.cache)
    report: dict = {"data": {"own": not cfg.data, **data_cfg}}  # what was scored: the run's own data or data=...
    if not corpus.ids and data_cfg.get("streaming"):
        raise DataError(f"The run streams its data (data.streaming=true), and evaluate scores whole prepared splits. "
                        f"Name data it can prepare, e.g. data={data_cfg.get('name', 'hub')} with the run's data.path and "
                        f"data.streaming=false, or data=text data.path=<file>.")
    for split in cfg.splits:
        if split not in corpus.ids:
            raise DataError(f"No split '{split}'; the data has: {', '.join(corpus.ids)}.")
        ids = corpus.ids[split]
        cpt = corpus.chars_per_token(split)
        m = evaluate_ids(model, ids, cfg.batch_size, cfg.bptt, cfg.device, return_logprobs=cfg.dump_logprobs)
        if cfg.dump_logprobs:
            path = run_dir / "eval" / f"{split}.logprobs.tsv"
            write_logprobs(path, ids, m.pop("positions"), m.pop("logprobs"), tokenizer)
            m["logprobs_file"] = str(path)
        m["bpc"] = m["bits_per_token"] / cpt
        print(f"{split:>10}: loss {m['loss']:.4f}  ppl {m['ppl']:.3f}  bpc {m['bpc']:.4f}  "
              f"acc {m['acc']:.4f}  ({m['tokens']} tokens)")
        if dyn["enabled"]:
            d = dynamic_evaluate(model, ids, cfg.batch_size, dyn["bptt"], dyn["lr"], dyn["decay"], dyn["epsilon"],
                                 cfg.device)
            d["bpc"] = d["bits_per_token"] / cpt
            m["dynamic_eval"] = {**d, "settings": {k: v for k, v in dyn.items() if k != "enabled"}}
            print(f"{'':>10}  dynamic eval: loss {d['loss']:.4f}  ppl {d['ppl']:.3f}  bpc {d['bpc']:.4f}")
        if cache["enabled"]:
            c = cache_evaluate(model, ids, cfg.batch_size, cfg.bptt, cache["size"], cache["theta"], cache["lam"],
                               cfg.device)
            c["bpc"] = c["bits_per_token"] / cpt
            m["cache"] = {**c, "settings": {k: v for k, v in cache.items() if k != "enabled"}}
            print(f"{'':>10}  neural cache: loss {c['loss']:.4f}  ppl {c['ppl']:.3f}  bpc {c['bpc']:.4f}")
        report[split] = m
    gen_cfg = to_dict(cfg.generation)
    if gen_cfg["enabled"]:
        g = generation_quality(model, tokenizer, config, gen_cfg, cfg.device)
        report["generation"] = g
        n = gen_cfg["max_n"]
        print("generation: " + "  ".join(f"distinct-{k} {g[f'distinct_{k}']:.3f}" for k in range(1, n + 1))
              + f"  rep-{n} {g[f'repetition_rate_{n}']:.3f}  self-BLEU-{n} {g[f'self_bleu_{n}']:.3f}"
              f"  own ppl {g['own_ppl']:.3f}  ({g['num_samples']} samples x {gen_cfg['max_new_tokens']} tokens)")
    out = Path(cfg.report) if cfg.report else run_dir / ("eval.json" if not cfg.data else f"eval-{_data_tag(data_cfg)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False))  # valid JSON: NaN/inf written as null
    print(f"report: {out}")
    return report
