"""Data-stage benchmark (issue 3). Prints ratios against baselines measured in the same run.

(1) Tokenizer training + encoding of WikiText-2 valid+test with byte_bpe (vocab 8000):
    our ``prepare_corpus`` (files source -> train tokenizer -> datasets.map -> memmapped .bin) on a
    cold cache (a fresh temporary HF_DATASETS_CACHE) and on the warm rerun, against the bare
    ``tokenizers`` API doing the same work (train_from_iterator over the lines, then encode_batch).
    Each measurement runs in a fresh process and times the work only (not the imports).
    Goals: cold / bare <= 1.3, cold / warm >= 10.
(2) Dataloader time per batch against one training step (forward, backward, Adam) of the default
    model (conf/model/lstm_lm.yaml, batch 32 x bptt 128, character-level Tiny Shakespeare), for
    every batching mode. Goal: < 5%.

    python bench/bench_data.py [--data-dir ../shared/data/wikitext-2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared_data import shared_data, shared_data_dir

HERE = Path(__file__).resolve()
VOCAB = 8000


def files(data_dir: Path) -> list[str]:
    return [str(data_dir / "valid.txt"), str(data_dir / "test.txt")]


def phase_bare(data_dir: Path) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    t0 = time.perf_counter()
    lines = [l for f in files(data_dir) for l in open(f, encoding="utf-8").read().splitlines(keepends=True)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=["<eos>", "<pad>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    encodings = tok.encode_batch(lines, add_special_tokens=False)
    n = sum(len(e.ids) for e in encodings)
    return {"seconds": time.perf_counter() - t0, "tokens": n}


def phase_ours(data_dir: Path) -> dict:
    import datasets

    from lstm_pipeline.data.pipeline import prepare_corpus

    datasets.disable_progress_bars()
    # datasets imports ~270 modules lazily on its first load_dataset: load a one-line file into a
    # throw-away cache first, untimed (the bare baseline's imports are not timed either); the real
    # data's cache stays cold
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "warm.txt").write_text("x\n")
        datasets.load_dataset("text", data_files=str(Path(tmp, "warm.txt")), cache_dir=str(Path(tmp, "c")))
    t0 = time.perf_counter()
    corpus = prepare_corpus({"name": "files", "path": files(data_dir), "val_fraction": 0.0, "test_fraction": 0.0},
                            {"name": "byte_bpe", "vocab_size": VOCAB, "min_frequency": 2})
    n = len(corpus.ids["train"])
    return {"seconds": time.perf_counter() - t0, "tokens": n, "dtype": str(corpus.ids["train"].dtype),
            "memmap": type(corpus.ids["train"]).__name__}


def run_phase(name: str, data_dir: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, str(HERE), "--phase", name, "--data-dir", str(data_dir)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_encoding(data_dir: Path, repeats: int) -> None:
    print(f"(1) byte_bpe vocab {VOCAB}: train + encode {', '.join(Path(f).name for f in files(data_dir))}")
    best = {"bare": [], "cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "HF_DATASETS_CACHE": cache}
            best["bare"].append(run_phase("bare", data_dir, env))
            best["cold"].append(run_phase("ours", data_dir, env))
            best["warm"].append(run_phase("ours", data_dir, env))
    t = {k: min(r["seconds"] for r in v) for k, v in best.items()}
    tokens = {k: v[0]["tokens"] for k, v in best.items()}
    print(f"  bare tokenizers : {t['bare']:.3f} s  ({tokens['bare']} tokens)")
    print(f"  ours, cold cache: {t['cold']:.3f} s  ({tokens['cold']} tokens, {best['cold'][0]['dtype']} "
          f"{best['cold'][0]['memmap']})")
    print(f"  ours, warm cache: {t['warm']:.3f} s")
    print(f"  overhead cold/bare = {t['cold'] / t['bare']:.2f}x (goal <= 1.3x)")
    print(f"  speed-up cold/warm = {t['cold'] / t['warm']:.1f}x (goal >= 10x)")
    print(f"  (best of {repeats}; each in a fresh process, imports not timed)")


def bench_loader(steps: int) -> None:
    import datasets
    import torch
    import torch.nn.functional as F
    from omegaconf import OmegaConf

    from lstm_pipeline.config.overrides import compose
    from lstm_pipeline.data.datamodule import StreamDataModule
    from lstm_pipeline.data.pipeline import prepare_corpus
    from lstm_pipeline.data.resets import forward_with_resets
    from lstm_pipeline.data.sources import bundled_corpus
    from lstm_pipeline.models.lm import RecurrentLM

    datasets.disable_progress_bars()
    train_cfg = compose("train", [])  # the default run's config, as `lstm-pipeline train` composes it
    model_cfg = OmegaConf.to_container(train_cfg.model, resolve=True)
    B, T = train_cfg.batching.batch_size, train_cfg.batching.bptt
    corpus = prepare_corpus({"name": "text", "path": None}, {"name": "char"})
    # documents mode: one paragraph (speech) per document
    paragraphs = prepare_corpus({"name": "files", "path": str(bundled_corpus()), "sample_by": "paragraph"},
                                {"name": "char"})
    model = RecurrentLM(corpus.tokenizer.vocab_size, **model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    def step(batch, state):
        x, y, *reset = batch
        logits, state = forward_with_resets(model, x, state, reset[0] if reset else None)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return tuple(s.detach() for s in state)

    print(f"(2) dataloader time per batch vs one training step (default model, B={B}, T={T}, char Tiny Shakespeare;"
          f" documents = paragraphs)")
    for mode, extra in (("stream", {}), ("stream", {"variable_bptt": True}), ("random_windows", {}), ("documents", {}),
                        ("documents", {"align_documents": True})):
        dm = StreamDataModule(paragraphs if mode == "documents" else corpus, batch_size=B, bptt=T, mode=mode, **extra)
        loader = dm.train_dataloader()
        it = iter(loader)
        batches = [next(it) for _ in range(3)]  # warm-up
        n = 200
        t0 = time.perf_counter()
        for _ in range(n):
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                next(it)
        t_batch = (time.perf_counter() - t0) / n
        state = None
        state = step(batches[0], state)  # warm-up
        t0 = time.perf_counter()
        for i in range(steps):
            state = step(batches[(i % 2) + 1], state)
        t_step = (time.perf_counter() - t0) / steps
        name = mode + "".join(f" + {k}" for k in extra)
        print(f"  {name:<24} batch {t_batch * 1e3:7.3f} ms  step {t_step * 1e3:8.1f} ms  "
              f"ratio {100 * t_batch / t_step:.2f}% (goal < 5%)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=shared_data_dir() / "wikitext-2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--phase", choices=["bare", "ours"])
    ap.add_argument("--only", choices=["encoding", "loader"])
    a = ap.parse_args()
    if a.phase:
        print(json.dumps((phase_bare if a.phase == "bare" else phase_ours)(a.data_dir)))
        return
    if not (a.data_dir / "valid.txt").is_file():
        a.data_dir = shared_data("wikitext-2")
    if a.only != "loader":
        bench_encoding(a.data_dir, a.repeats)
    if a.only != "encoding":
        bench_loader(a.steps)


if __name__ == "__main__":
    main()
