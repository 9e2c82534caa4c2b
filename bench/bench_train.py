"""Training throughput: the full pipeline against a bare PyTorch loop, on WikiText-2 valid.

Two models: character level (2x512 LSTM) and word level (2x650 tied LSTM over a whitespace vocab).
For each, two worker processes run in turn on the same token ids, model size, batch, bptt, SGD and
clipping:

* ``bare``: the loop written the obvious way (as pytorch/examples word_language_model does):
  ``nn.Embedding -> nn.LSTM -> nn.Linear``, log-softmax + NLL, manual SGD, default process settings;
* ``pipeline``: our ``RecurrentLM`` inside ``LanguageModelTask`` and ``StreamDataModule`` under a
  Lightning ``Trainer``, started the way ``lstm-pipeline train`` starts (``tune_malloc()`` first).

Each worker reports the tokens/s of its median timed step (after warm-up steps), and the runs
alternate bare, pipeline, bare, pipeline (``--rounds``), the best run of each kept, so that the
load drift of this shared machine hits both alike. Also reported: the achieved GFLOP/s
(3x the forward matmul FLOPs per token), which is divided by a float32 matmul throughput measured in
this same run. Usage::

    python bench/bench_train.py                      # both levels, a few minutes
    python bench/bench_train.py --levels word --steps 12
    python bench/bench_train.py --bf16               # also the pipeline under trainer.precision=bf16-mixed
    python bench/bench_train.py --levels word_wt2 --adaptive           # + model.output=adaptive
    python bench/bench_train.py --levels word_wt2 --quality 120        # test perplexity after 120 s each
    python bench/bench_train.py --device cuda        # on a GPU (both runners; bench/gpu_check.sh uses it)

``--bf16`` adds a third runner, ``pipeline_bf16``: the same pipeline with Lightning's ``bf16-mixed``
precision (autocast to bfloat16 on the CPU). Its numbers differ from the float32 runners', so it is
reported beside them, against the same float32 bare loop, not as a replacement.

``--adaptive`` adds ``pipeline_adaptive``: the same pipeline with ``model.output=adaptive`` (the
adaptive softmax, default cutoffs; it cannot be tied, so the model is untied; the clusters cut on
the training ids' frequencies, as ``lstm-pipeline train`` does). Level ``word_wt2`` is level ``word``
at WikiText-2's full vocabulary, 33,278 words (train.txt's; the ids are valid.txt's, the other
words never occur): the output layer's cost at the size the WikiText-2 presets train.

``--quality SECONDS`` compares the full and the adaptive softmax at equal wall time instead: each
pipeline trains for SECONDS (alternating, ``--rounds`` times, best kept) on valid.txt, then scores the
first ``--score-tokens`` words of test.txt (words not in the vocabulary are ``<unk>``): perplexity.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from shared_data import shared_data_dir

DATA = shared_data_dir() / "wikitext-2" / "valid.txt"  # $LSTM_PIPELINE_SHARED_DATA or ../shared/data
TEST = DATA.with_name("test.txt")
LEVELS = {
    # name: (hidden, layers, embedding, tied, batch, bptt, lr, clip, dropout)
    "char": dict(hidden=512, layers=2, emb=512, tied=False, batch=32, bptt=128, lr=1.0, clip=0.25, dropout=0.0),
    "word": dict(hidden=650, layers=2, emb=650, tied=True, batch=20, bptt=35, lr=20.0, clip=0.25, dropout=0.5),
    # the same at WikiText-2's full vocabulary (train.txt's 33,278 words): an output layer 2.4x wider
    "word_wt2": dict(hidden=650, layers=2, emb=650, tied=True, batch=20, bptt=35, lr=20.0, clip=0.25, dropout=0.5,
                     vocab=33278),
}


def _units(level: str, text: str) -> list[str]:
    if level == "char":
        return list(text)
    return [w for line in text.splitlines() for w in line.split() + ["<eos>"]]  # as word_language_model's Corpus


def load_ids(level: str, path: Path, score: Path | None = None, score_tokens: int = 0):
    """valid.txt's ids (whitespace words, <eos> at each line end; or characters), the vocabulary size
    (the level's ``vocab`` where it is larger: words that never occur), and with ``score`` the first
    ``score_tokens`` ids of that file (units not in the vocabulary are <unk>)."""
    import numpy as np

    units = _units(level, path.read_text(encoding="utf-8"))
    vocab = sorted(set(units) | ({"<unk>"} if score else set()))
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.asarray([index[w] for w in units], dtype=np.int64)
    size = max(len(vocab), LEVELS[level].get("vocab", 0))
    if score is None:
        return ids, size
    scored = _units(level, score.read_text(encoding="utf-8"))[:score_tokens]
    return ids, size, np.asarray([index.get(w, index["<unk>"]) for w in scored], dtype=np.int64)


def train_flops_per_token(cfg: dict, vocab: int) -> float:
    """3x forward matmul FLOPs (forward + backward): LSTM gates per layer, plus the output layer."""
    h, e = cfg["hidden"], cfg["emb"]
    lstm = sum(2 * 4 * h * ((e if layer == 0 else h) + h) for layer in range(cfg["layers"]))
    return 3.0 * (lstm + 2 * h * vocab)


def matmul_gflops(n: int = 1024, reps: int = 10, device: str = "cpu") -> float:
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


# -- workers ------------------------------------------------------------------------------------
def bare_worker(level: str, steps: int, warmup: int, device: str = "cpu") -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    cfg = LEVELS[level]
    ids, vocab = load_ids(level, DATA)
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(vocab, cfg["emb"])
            self.rnn = nn.LSTM(cfg["emb"], cfg["hidden"], cfg["layers"], dropout=cfg["dropout"])
            self.drop = nn.Dropout(cfg["dropout"])
            self.decoder = nn.Linear(cfg["hidden"], vocab)
            if cfg["tied"]:
                self.decoder.weight = self.encoder.weight

        def forward(self, x, hidden):
            out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
            logits = self.decoder(self.drop(out)).view(-1, vocab)
            return F.log_softmax(logits, dim=1), hidden

    model = Model().train().to(device)
    data = torch.from_numpy(ids).to(device)
    nbatch = data.size(0) // cfg["batch"]
    data = data[: nbatch * cfg["batch"]].view(cfg["batch"], -1).t().contiguous()  # (N, B)
    hidden = None
    times = []
    bptt = cfg["bptt"]
    for step, i in enumerate(range(0, data.size(0) - 1, bptt)):
        if step >= warmup + steps:
            break
        t0 = time.perf_counter()
        seq = min(bptt, data.size(0) - 1 - i)
        x, y = data[i : i + seq], data[i + 1 : i + 1 + seq].reshape(-1)
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)
        model.zero_grad()
        out, hidden = model(x, hidden)
        loss = F.nll_loss(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-cfg["lr"])
        loss.item()
        times.append((time.perf_counter() - t0, x.numel()))
    return _summary(times[warmup:], cfg, vocab)


def pipeline_worker(level: str, steps: int, warmup: int, precision: str = "32-true", output: str = "full",
                    budget_s: float = 0.0, score_tokens: int = 0, device: str = "cpu") -> dict:
    """``budget_s`` > 0: train for that many seconds (from the first batch), then score test.txt."""
    from lstm_pipeline.training.malloc import tune_malloc

    tuned = tune_malloc()  # what lstm-pipeline train does first
    import lightning as L
    import torch

    from lstm_pipeline.data.datamodule import StreamDataModule
    from lstm_pipeline.data.pipeline import Corpus
    from lstm_pipeline.training.module import LanguageModelTask

    cfg = LEVELS[level]
    if budget_s:
        ids, vocab, test_ids = load_ids(level, DATA, TEST, score_tokens)
    else:
        ids, vocab = load_ids(level, DATA)
    torch.manual_seed(0)
    corpus = Corpus(tokenizer=None, ids={"train": ids, "validation": ids[:5000], "test": ids[:5000]})
    model = {"cell": {"name": "lstm", "proj_size": 0}, "embedding_dim": cfg["emb"], "hidden_size": cfg["hidden"],
             "num_layers": cfg["layers"], "dropout": cfg["dropout"], "tie_weights": cfg["tied"],
             # the bare loop's dropouts: on the embeddings too, a fresh mask per element (as wlm_medium)
             "dropout_input": cfg["dropout"], "locked_dropout": False}
    if output == "adaptive":  # default cutoffs; an adaptive softmax has no one matrix to tie
        model.update(output="adaptive", tie_weights=False)
    task = LanguageModelTask(model=model, vocab_size=vocab, optim={"_target_": "torch.optim.SGD", "lr": cfg["lr"]})
    if output == "adaptive":  # the clusters on the training ids' frequencies, as lstm-pipeline train cuts them
        import numpy as np

        task.model.set_frequency_order(np.bincount(ids, minlength=vocab))
    dm = StreamDataModule(corpus, batch_size=cfg["batch"], bptt=cfg["bptt"], eval_batch_size=4)
    times = []

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, out, batch, idx):
            times.append((time.perf_counter() - self.t0, batch[0].numel()))
            if budget_s and sum(t for t, _ in times) >= budget_s:
                trainer.should_stop = True

    trainer = L.Trainer(accelerator="cpu" if device == "cpu" else "gpu", devices=1,
                        max_steps=10 ** 9 if budget_s else warmup + steps,
                        max_epochs=10 ** 6 if budget_s else None, limit_val_batches=0, precision=precision,
                        num_sanity_val_steps=0, gradient_clip_val=cfg["clip"], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Timer()], use_distributed_sampler=False)
    trainer.fit(task, datamodule=dm)
    if budget_s:
        from lstm_pipeline.evaluation.scoring import evaluate_ids

        report = evaluate_ids(task.model.eval(), test_ids, batch_size=10, bptt=70)
        return {**_summary(times, cfg, vocab), "train_s": sum(t for t, _ in times), "train_tokens": sum(n for _, n in times),
                "test_ppl": report["ppl"],
                "test_tokens": int(len(test_ids))}
    return {**_summary(times[warmup:], cfg, vocab), "mallopt": tuned}


RUNNERS = {"bare": bare_worker, "pipeline": pipeline_worker,
           "pipeline_bf16": lambda level, steps, warmup, device="cpu": pipeline_worker(level, steps, warmup, "bf16-mixed",
                                                                                        device=device),
           "pipeline_adaptive": lambda level, steps, warmup, device="cpu": pipeline_worker(level, steps, warmup,
                                                                                            output="adaptive",
                                                                                            device=device)}


def _summary(times, cfg, vocab) -> dict:
    """Throughput of the median step (steps on this shared machine are disturbed now and then; the
    median ignores the odd slow one) and of all timed steps together."""
    rates = sorted(n / t for t, n in times)
    tps = rates[len(rates) // 2] if len(rates) % 2 else 0.5 * (rates[len(rates) // 2 - 1] + rates[len(rates) // 2])
    mean = sum(n for _, n in times) / sum(t for t, _ in times)
    return {"tokens_per_sec": tps, "mean_tokens_per_sec": mean, "gflops": tps * train_flops_per_token(cfg, vocab) / 1e9,
            "vocab": vocab, "steps": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", nargs="+", default=["char", "word"], choices=list(LEVELS))
    ap.add_argument("--steps", type=int, default=8, help="timed steps per worker")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating bare/pipeline runs; the best of each is kept")
    ap.add_argument("--bf16", action="store_true", help="also run the pipeline with trainer.precision=bf16-mixed")
    ap.add_argument("--adaptive", action="store_true", help="also run the pipeline with model.output=adaptive")
    ap.add_argument("--quality", type=float, default=0.0, metavar="SECONDS",
                    help="instead: train full and adaptive softmax SECONDS each, then score test.txt (perplexity)")
    ap.add_argument("--score-tokens", type=int, default=30000, help="--quality: words of test.txt scored")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both runners run there)")
    ap.add_argument("--worker", choices=list(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--level", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.quality:
            out = pipeline_worker(args.level, 0, 0, output="adaptive" if args.worker == "pipeline_adaptive" else "full",
                                  budget_s=args.quality, score_tokens=args.score_tokens, device=args.device)
        else:
            out = RUNNERS[args.worker](args.level, args.steps, args.warmup, device=args.device)
        print("RESULT " + json.dumps(out), flush=True)
        return
    if args.quality:
        return quality(args)
    import torch

    runners = ["bare", "pipeline"] + (["pipeline_bf16"] if args.bf16 else []) + (["pipeline_adaptive"] if args.adaptive else [])
    peak = matmul_gflops(device=args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul 1024^3: {peak:.1f} GFLOP/s")
    for level in args.levels:
        res: dict[str, dict] = {}
        for rnd in range(args.rounds):  # bare, pipeline, bare, pipeline, ...: drift hits both alike
            for worker in runners:
                out = subprocess.run([sys.executable, __file__, "--worker", worker, "--level", level,
                                      "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
                print(f"  round {rnd + 1} {level:<8} {worker:<17} {r['tokens_per_sec']:>8.0f} tokens/s (median step), "
                      f"{r['mean_tokens_per_sec']:>8.0f} (mean)", flush=True)
                if worker not in res or r["tokens_per_sec"] > res[worker]["tokens_per_sec"]:
                    res[worker] = r
        print(f"{'level':<8} {'runner':<17} {'tokens/s':>10} {'GFLOP/s':>8} {'of matmul':>9} {'vs bare':>8}")
        for worker in runners:
            r = res[worker]
            # the adaptive softmax does fewer FLOPs than the full one these count: no GFLOP/s for it
            flops = ("-", "-") if worker == "pipeline_adaptive" else (f"{r['gflops']:.1f}", f"{r['gflops'] / peak:.0%}")
            print(f"{level:<8} {worker:<17} {r['tokens_per_sec']:>10.0f} {flops[0]:>8} "
                  f"{flops[1]:>9} {r['tokens_per_sec'] / res['bare']['tokens_per_sec']:>7.2f}x")
        print(f"{level:<6} vocab {res['bare']['vocab']}, {LEVELS[level]}")
    peak2 = matmul_gflops(device=args.device)
    print(f"float32 matmul again at the end: {peak2:.1f} GFLOP/s (load drift check)")


def quality(args) -> None:
    """Full against adaptive softmax at equal training wall time: test perplexity (alternating runs)."""
    import os

    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    for level in args.levels:
        res: dict[str, dict] = {}
        for rnd in range(args.rounds):
            for worker in ("pipeline", "pipeline_adaptive"):
                out = subprocess.run([sys.executable, __file__, "--worker", worker, "--level", level,
                                      "--quality", str(args.quality), "--score-tokens", str(args.score_tokens)],
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
                print(f"  round {rnd + 1} {level:<8} {worker:<18} {r['train_tokens']:>7} tokens in {r['train_s']:.0f} s "
                      f"({r['mean_tokens_per_sec']:.0f}/s): test perplexity {r['test_ppl']:.1f}", flush=True)
                if worker not in res or r["test_ppl"] < res[worker]["test_ppl"]:
                    res[worker] = r
        print(f"{'level':<9} {'runner':<18} {'trained tokens':>14} {'tokens/s':>9} {'test ppl':>9}")
        for worker, r in res.items():
            print(f"{level:<9} {worker:<18} {r['train_tokens']:>14} {r['mean_tokens_per_sec']:>9.0f} {r['test_ppl']:>9.1f}")
        print(f"{level:<9} vocab {res['pipeline']['vocab']}, {args.quality:g} s of training each, "
              f"{res['pipeline']['test_tokens']} test.txt words scored; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
