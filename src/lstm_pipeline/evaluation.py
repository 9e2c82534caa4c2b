"""``evaluate(cfg)``: loss, perplexity and bits per character of an exported model on each split,
with the recurrent state carried across the whole split (contiguous streams)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from .config import to_dict
from .data.batching import StreamBatches
from .data.pipeline import prepare_corpus
from .data.sources import DataError
from .hub import load_pretrained, resolve_model_dir


@torch.no_grad()
def evaluate_ids(model, ids, batch_size: int = 16, bptt: int = 256, device: str = "cpu") -> dict:
    batches = StreamBatches(ids, batch_size, bptt, split="eval")
    model = model.to(device).eval()
    state, nll, correct, count = None, 0.0, 0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits, state = model(x, state)
        nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum").item()
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
    loss = nll / count
    return {"loss": loss, "ppl": math.exp(min(loss, 50)), "bits_per_token": loss / math.log(2),
            "acc": correct / count, "tokens": count}


def evaluate(cfg: DictConfig) -> dict:
    model_dir = resolve_model_dir(cfg.run)
    model, tokenizer, config = load_pretrained(model_dir, map_location=cfg.device)
    data_cfg = to_dict(cfg.data) or config.get("data")
    if not data_cfg:
        raise DataError(f"{model_dir}/config.json does not record its data; pass data=... to evaluate on.")
    corpus = prepare_corpus(data_cfg, {}, tokenizer_path=model_dir / "tokenizer.json")
    report = {}
    for split in cfg.splits:
        if split not in corpus.ids:
            raise DataError(f"No split '{split}'; the data has: {', '.join(corpus.ids)}.")
        m = evaluate_ids(model, corpus.ids[split], cfg.batch_size, cfg.bptt, cfg.device)
        m["bpc"] = m["bits_per_token"] / corpus.chars_per_token(split)
        report[split] = m
        print(f"{split:>10}: loss {m['loss']:.4f}  ppl {m['ppl']:.3f}  bpc {m['bpc']:.4f}  "
              f"acc {m['acc']:.4f}  ({m['tokens']} tokens)")
    out = Path(model_dir).parent / "eval.json" if Path(model_dir).name == "model" else None
    if out is not None:
        out.write_text(json.dumps(report, indent=2))
    return report
