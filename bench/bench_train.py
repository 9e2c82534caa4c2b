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
    python bench/bench_train.py --device cuda        # on a GPU (both runners; bench/gpu_check.sh uses it)

``--bf16`` adds a third runner, ``pipeline_bf16``: the same pipeline with Lightning's ``bf16-mixed``
precision (autocast to bfloat16 on the CPU). Its numbers differ from the float32 runners', so it is
reported beside them, against the same float32 bare loop, not as a replacement.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DATA = Path("/work/shared/data/wikitext-2/valid.txt")
LEVELS = {
    # name: (hidden, layers, embedding, tied, batch, bptt, lr, clip, dropout)
    "char": dict(hidden=512, layers=2, emb=512, tied=False, batch=32, bptt=128, lr=1.0, clip=0.25, dropout=0.0),
    "word": dict(hidden=650, layers=2, emb=650, tied=True, batch=20, bptt=35, lr=20.0, clip=0.25, dropout=0.5),
}


def load_ids(level: str, path: Path):
    import numpy as np

    text = path.read_text(encoding="utf-8")
    if level == "char":
        vocab = sorted(set(text))
        index = {c: i for i, c in enumerate(vocab)}
        ids = [index[c] for c in text]
    else:  # whitespace words, <eos> at each line end (as word_language_model's Corpus)
        words = [w for line in text.splitlines() for w in line.split() + ["<eos>"]]
        vocab = sorted(set(words))
        index = {w: i for i, w in enumerate(vocab)}
        ids = [index[w] for w in words]
    return np.asarray(ids, dtype=np.int64), len(vocab)


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


def pipeline_worker(level: str, steps: int, warmup: int, precision: str = "32-true", device: str = "cpu") -> dict:
    from lstm_pipeline.training.malloc import tune_malloc

    tuned = tune_malloc()  # what lstm-pipeline train does first
    import lightning as L
    import torch

    from lstm_pipeline.data.datamodule import StreamDataModule
    from lstm_pipeline.data.pipeline import Corpus
    from lstm_pipeline.training.module import LanguageModelTask

    cfg = LEVELS[level]
    ids, vocab = load_ids(level, DATA)
    torch.manual_seed(0)
    corpus = Corpus(tokenizer=None, ids={"train": ids, "validation": ids[:5000], "test": ids[:5000]})
    model = {"cell": {"name": "lstm", "proj_size": 0}, "embedding_dim": cfg["emb"], "hidden_size": cfg["hidden"],
             "num_layers": cfg["layers"], "dropout": cfg["dropout"], "tie_weights": cfg["tied"],
             # the bare loop's dropouts: on the embeddings too, a fresh mask per element (as wlm_medium)
             "dropout_input": cfg["dropout"], "locked_dropout": False}
    task = LanguageModelTask(model=model, vocab_size=vocab, optim={"_target_": "torch.optim.SGD", "lr": cfg["lr"]})
    dm = StreamDataModule(corpus, batch_size=cfg["batch"], bptt=cfg["bptt"], eval_batch_size=4)
    times = []

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, module, out, batch, idx):
            times.append((time.perf_counter() - self.t0, batch[0].numel()))

    trainer = L.Trainer(accelerator="cpu" if device == "cpu" else "gpu", devices=1, max_steps=warmup + steps, limit_val_batches=0, precision=precision,
                        num_sanity_val_steps=0, gradient_clip_val=cfg["clip"], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Timer()], use_distributed_sampler=False)
    trainer.fit(task, datamodule=dm)
    return {**_summary(times[warmup:], cfg, vocab), "mallopt": tuned}


RUNNERS = {"bare": bare_worker, "pipeline": pipeline_worker,
           "pipeline_bf16": lambda level, steps, warmup, device="cpu": pipeline_worker(level, steps, warmup, "bf16-mixed",
                                                                                        device)}


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
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both runners run there)")
    ap.add_argument("--worker", choices=list(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--level", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(RUNNERS[args.worker](args.level, args.steps, args.warmup, device=args.device)),
              flush=True)
        return
    import torch

    runners = ["bare", "pipeline"] + (["pipeline_bf16"] if args.bf16 else [])
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
                print(f"  round {rnd + 1} {level:<5} {worker:<13} {r['tokens_per_sec']:>8.0f} tokens/s (median step), "
                      f"{r['mean_tokens_per_sec']:>8.0f} (mean)", flush=True)
                if worker not in res or r["tokens_per_sec"] > res[worker]["tokens_per_sec"]:
                    res[worker] = r
        print(f"{'level':<6} {'runner':<13} {'tokens/s':>10} {'GFLOP/s':>8} {'of matmul':>9} {'vs bare':>8}")
        for worker in runners:
            r = res[worker]
            print(f"{level:<6} {worker:<13} {r['tokens_per_sec']:>10.0f} {r['gflops']:>8.1f} "
                  f"{r['gflops'] / peak:>8.0%} {r['tokens_per_sec'] / res['bare']['tokens_per_sec']:>7.2f}x")
        print(f"{level:<6} vocab {res['bare']['vocab']}, {LEVELS[level]}")
    peak2 = matmul_gflops(device=args.device)
    print(f"float32 matmul again at the end: {peak2:.1f} GFLOP/s (load drift check)")


if __name__ == "__main__":
    main()
