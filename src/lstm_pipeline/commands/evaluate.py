"""``lstm-pipeline evaluate run=<run>``: loss, perplexity and bpc of a run's model on its splits
(its own data, or ``data=...``), with dynamic evaluation, the neural cache and generation metrics
on request; writes ``eval.json``."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ..atomic import write_text
from ..artifacts.hub import resolve_pretrained
from ..artifacts.integrity import json_safe
from ..artifacts.model_dir import load_pretrained
from ..config.schema import to_dict
from ..data.pipeline import prepare_corpus
from ..data.sources import DataError
from ..evaluation.scoring import (
    evaluate_ids,
    generation_quality,
    recorded_data,
    write_logprobs,
)


def _data_tag(data_cfg: dict) -> str:
    """A file-name tag for data other than the run's own: its name and a hash of its settings, so that
    scoring other data never overwrites ``eval.json`` (the run's own) nor another data set's report."""
    import hashlib

    digest = hashlib.sha1(json.dumps(data_cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{data_cfg.get('name', 'data')}-{digest}"


def run(cfg: DictConfig) -> dict:
    """Score ``cfg.run``'s model on ``cfg.splits`` (and dynamic evaluation, the cache, generation metrics); writes the report."""
    from ..evaluation.cache import cache_evaluate
    from ..evaluation.dynamic import dynamic_evaluate

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
        m = evaluate_ids(model, ids, cfg.batch_size, cfg.bptt, cfg.device, return_logprobs=cfg.dump_logprobs,
                         chars_per_token=cpt)
        if cfg.dump_logprobs:
            path = run_dir / "eval" / f"{split}.logprobs.tsv"
            write_logprobs(path, ids, m.pop("positions"), m.pop("logprobs"), tokenizer)
            m["logprobs_file"] = str(path)
        print(f"{split:>10}: loss {m['loss']:.4f}  ppl {m['ppl']:.3f}  bpc {m['bpc']:.4f}  "
              f"acc {m['acc']:.4f}  ({m['tokens']} tokens)")
        if dyn["enabled"]:
            d = dynamic_evaluate(model, ids, cfg.batch_size, dyn["bptt"], dyn["lr"], dyn["decay"], dyn["epsilon"],
                                 cfg.device, chars_per_token=cpt)
            m["dynamic_eval"] = {**d, "settings": {k: v for k, v in dyn.items() if k != "enabled"}}
            print(f"{'':>10}  dynamic eval: loss {d['loss']:.4f}  ppl {d['ppl']:.3f}  bpc {d['bpc']:.4f}")
        if cache["enabled"]:
            c = cache_evaluate(model, ids, cfg.batch_size, cfg.bptt, cache["size"], cache["theta"], cache["lam"],
                               cfg.device, chars_per_token=cpt)
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
    # valid JSON (NaN/inf written as null), whole or not at all
    write_text(out, json.dumps(json_safe(report), indent=2, allow_nan=False))
    print(f"report: {out}")
    return report
