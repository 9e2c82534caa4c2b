"""The best model per second: the pipeline's default run against a tuned bare PyTorch loop, for the
same wall-clock training budget, scored on the same held-out text (issue 15).

Runners, each in its own process, one after the other:

* ``bare``: the loop a careful user writes by hand (contained here): ``nn.Embedding(V, 128) ->
  nn.LSTM(128, 256, 2) -> nn.Linear(256, V)``, batch 32 contiguous streams, bptt 64, state carried,
  AdamW lr 3e-3 (weight decay 0.01), a cosine schedule over the wall time, gradient clipping 1.0,
  float32, the torch default threads; it trains until the budget is spent;
* ``pipeline``: ``lstm-pipeline train budget=<budget>s`` exactly as a user runs it (the default
  recipe, ``--overrides`` added), in a subprocess; its exported model is scored.

Both train on the default split's training text of the bundled Tiny Shakespeare (the first 90%) and
are scored by the same function on the last 10%: the default split's validation and test together,
token-weighted (characters), in nats, float32, 16 contiguous streams with the state carried, in
windows of 256. The budget counts training only (the pipeline's, as Lightning's ``max_time`` counts:
its in-run validations included); start-up and the final validation/export are not in it.

Usage::

    python bench/bench_quality.py                          # both runners, 114 s each (~5 minutes)
    python bench/bench_quality.py --budget 30              # shorter
    python bench/bench_quality.py --runners pipeline --budget 45 \\
        --variant fp32=trainer.precision=32-true --variant small="model.hidden_size=256 model.num_layers=2"

``--variant NAME=OVERRIDES`` (repeatable) adds a pipeline runner with those Hydra overrides on top of the
default (for the ablation table of docs/training.md). The output ends with one line per runner: its
name first, its held-out loss in nats last.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCORE_STREAMS, SCORE_WINDOW = 16, 256
BARE = dict(embedding=128, hidden=256, layers=2, batch=32, bptt=64, lr=3e-3, weight_decay=0.01, clip=1.0)


def corpus():
    """The default run's data and tokenizer (data=shakespeare, tokenizer=char): train/validation/test ids."""
    from lstm_pipeline.data.pipeline import prepare_corpus

    return prepare_corpus({"name": "text"}, {"name": "char"})


def score(forward, corpus) -> dict:
    """Token-weighted loss (nats) of ``forward(x (B, T) long, state) -> (logits (B, T, V), state)`` on the
    validation and test splits: each split as ``SCORE_STREAMS`` contiguous streams, state carried,
    windows of ``SCORE_WINDOW``, float32. Returns the loss per split, the combined loss and token count."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    out, total_nll, total_n = {}, 0.0, 0
    with torch.no_grad():
        for split in ("validation", "test"):
            ids = torch.from_numpy(np.asarray(corpus.ids[split], dtype=np.int64))
            n = (ids.numel() - 1) // SCORE_STREAMS
            x_all = ids[: n * SCORE_STREAMS].view(SCORE_STREAMS, n)
            y_all = ids[1: n * SCORE_STREAMS + 1].view(SCORE_STREAMS, n)
            state, nll = None, 0.0
            for i in range(0, n, SCORE_WINDOW):
                logits, state = forward(x_all[:, i:i + SCORE_WINDOW], state)
                nll += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                       y_all[:, i:i + SCORE_WINDOW].reshape(-1), reduction="sum").item()
            out[split] = nll / y_all.numel()
            total_nll, total_n = total_nll + nll, total_n + y_all.numel()
    out["loss"], out["tokens"] = total_nll / total_n, total_n
    return out


# -- workers ------------------------------------------------------------------------------------
def bare_worker(budget: float, max_steps: int = 0) -> dict:
    """Train the bare loop for ``budget`` seconds (or, with ``max_steps`` > 0, for that many steps, the
    cosine then over the steps: a load-independent stand-in for a quiet machine's budget) and score it."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    c = corpus()
    vocab = c.tokenizer.vocab_size
    torch.manual_seed(0)
    cfg = BARE

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, cfg["embedding"])
            self.rnn = nn.LSTM(cfg["embedding"], cfg["hidden"], cfg["layers"], batch_first=True)
            self.head = nn.Linear(cfg["hidden"], vocab)

        def forward(self, x, state=None):
            h, state = self.rnn(self.embed(x), state)
            return self.head(h), state

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    ids = torch.from_numpy(np.asarray(c.ids["train"], dtype=np.int64))
    n = (ids.numel() - 1) // cfg["batch"]
    xs, ys = ids[: n * cfg["batch"]].view(cfg["batch"], n), ids[1: n * cfg["batch"] + 1].view(cfg["batch"], n)
    steps, state, pos = 0, None, 0
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        progress = steps / max_steps if max_steps > 0 else elapsed / budget
        if progress >= 1.0:
            break
        for g in opt.param_groups:  # cosine over the wall time (or the steps)
            g["lr"] = cfg["lr"] * 0.5 * (1 + math.cos(math.pi * progress))
        if pos + cfg["bptt"] > n:
            pos, state = 0, None  # a new epoch
        x, y = xs[:, pos:pos + cfg["bptt"]], ys[:, pos:pos + cfg["bptt"]]
        pos += cfg["bptt"]
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        steps += 1
    trained = time.monotonic() - start
    model.eval()
    return {"steps": steps, "train_s": trained, "threads": torch.get_num_threads(), "train_loss": loss.item(),
            **score(model, c)}


def pipeline_worker(budget: float, overrides: list[str]) -> dict:
    import torch

    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "lstm_pipeline.cli", "train", f"budget={budget:g}s", f"hydra.run.dir={run_dir}",
               "sample.max_new_tokens=0", "trainer.enable_progress_bar=false", *overrides]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
        from lstm_pipeline.artifacts.model_dir import load_pretrained

        model, _, config = load_pretrained(run_dir / "model")
        log = (run_dir / "train.log").read_text()
        precision = next((line.split("precision ", 1)[1].split(" ", 1)[0] for line in log.splitlines()
                          if "(trainer.precision=auto)" in line), None)
        timer = (ckpt.get("callbacks") or {}).get("Timer")  # none in a step-bounded run (trainer.max_steps=N)
        return {"steps": ckpt["global_step"], "train_s": timer["time_elapsed"]["train"] if timer else wall,
                "wall_s": wall, "precision": precision, "model": {k: config["model"][k] for k in
                                                                   ("hidden_size", "num_layers", "embedding_dim")},
                "threads": torch.get_num_threads(), **score(model.float().eval(), corpus())}


def run_worker(name: str, budget: float, overrides: list[str], bare_steps: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--worker", "bare" if name == "bare" else "pipeline", "--budget", str(budget),
           "--bare-steps", str(bare_steps)]
    if name != "bare":
        cmd += ["--worker-overrides", json.dumps(overrides)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"runner {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=114.0, help="training seconds per runner (default 114)")
    ap.add_argument("--runners", default="bare,pipeline", help="comma-separated: bare, pipeline")
    ap.add_argument("--overrides", default="", help="Hydra overrides added to the pipeline runner")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                    help="another pipeline runner: the default with these overrides (repeatable)")
    ap.add_argument("--bare-steps", type=int, default=0,
                    help="train the bare loop for this many steps instead of the budget (cosine over the steps)")
    ap.add_argument("--worker", choices=["bare", "pipeline"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-overrides", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        result = bare_worker(args.budget, args.bare_steps) if args.worker == "bare" else \
            pipeline_worker(args.budget, json.loads(args.worker_overrides))
        print("RESULT " + json.dumps(result), flush=True)
        return
    runners = [(r, shlex.split(args.overrides) if r == "pipeline" else []) for r in args.runners.split(",") if r]
    for v in args.variant:
        name, _, ov = v.partition("=")
        runners.append((name, shlex.split(ov)))
    print(f"budget {args.budget:g} s of training per runner; held-out text: the last 10% of Tiny Shakespeare "
          f"(validation + test); load average {load_average()}", flush=True)
    results = {}
    for name, overrides in runners:
        r = results[name] = run_worker(name, args.budget, overrides, args.bare_steps)
        extra = f", {r['precision']}, {r['model']}" if "precision" in r else f", {BARE}"
        print(f"  {name:<10} {r['steps']:>6} steps in {r['train_s']:6.1f} s, {r['threads']} threads{extra}: "
              f"validation {r['validation']:.4f}, test {r['test']:.4f}, held-out {r['loss']:.4f} nats  "
              f"(load average {load_average()}){' ' + ' '.join(overrides) if overrides else ''}", flush=True)
    if "bare" in results:
        for name, r in results.items():
            if name != "bare":
                print(f"  {name} - bare: {r['loss'] - results['bare']['loss']:+.4f} nats")
    for name, r in results.items():
        print(f"{name} {r['steps']} steps, {r['train_s']:.1f} s of training, held-out loss (nats): {r['loss']:.4f}")


if __name__ == "__main__":
    main()
