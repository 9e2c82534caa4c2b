"""Deployment export benchmark (issue 6).

1. Step latency at batch 1 of a 2x512 LSTM with a 10k vocabulary: PyTorch eager (``model.step``,
   the library's own generation path) vs the exported step module as TorchScript, ONNX Runtime,
   and both int8-quantised. Same thread count everywhere (``--threads``); ratios are against eager
   measured in the same run.
2. Perplexity change from int8 quantisation on WikiText-2 test: a word-level 2x512 LSTM (10k
   vocabulary: the most frequent words, the rest <unk>) is trained for ``--train-seconds`` on CPU
   (on wiki.valid: only valid/test are shipped under shared/data/wikitext-2), then the test text is
   scored token by token through each step module with the state carried (16 contiguous streams).

    python bench/bench_export.py [--threads 1] [--train-seconds 150] [--steps 500] [--test-tokens 16000]
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lstm_pipeline.artifacts.export import export_step
from shared_data import shared_data
from lstm_pipeline.models.lm import RecurrentLM

ROOT = Path(__file__).resolve().parents[1]


def wikitext2_dir() -> Path:
    """$WIKITEXT2_DIR, else wikitext-2 in the shared data folder ($LSTM_PIPELINE_SHARED_DATA or ../shared/data)."""
    if os.environ.get("WIKITEXT2_DIR"):
        return Path(os.environ["WIKITEXT2_DIR"])
    return shared_data("wikitext-2", "test.txt").parent
CFG = {"cell": {"name": "lstm"}, "embedding_dim": 512, "hidden_size": 512, "num_layers": 2, "dropout": 0.1}


def runners(model: RecurrentLM, tmp: Path, threads: int) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def ort_runner(path):
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda tok, st: (lambda o: (o[0], o[1:]))(
            sess.run(None, {"token": tok, **{f"state_{i}": s for i, s in enumerate(st)}}))

    def ts_runner(path):
        m = torch.jit.load(str(path))
        m = torch.jit.optimize_for_inference(torch.jit.freeze(m.eval())) if "int8" not in path.name else m

        def run(tok, st):
            out = m(tok, *st)
            return out[0], tuple(out[1:])
        return run

    def eager(tok, st):
        logits, st = model.step(tok, st)
        return logits, st

    out = {"eager": ("torch", eager)}
    with torch.no_grad():
        out["torchscript"] = ("torch", ts_runner(export_step(model, tmp / "s.pt", "torchscript")))
        out["onnxruntime"] = ("numpy", ort_runner(export_step(model, tmp / "s.onnx", "onnx")))
        out["torchscript-int8"] = ("torch", ts_runner(export_step(model, tmp / "s.int8.pt", "torchscript", True)))
        out["onnxruntime-int8"] = ("numpy", ort_runner(export_step(model, tmp / "s.int8.onnx", "onnx", True)))
    return out


def latency(runner, kind, model, steps: int) -> float:
    state = model.init_state(1)
    tok = torch.tensor([1])
    if kind == "numpy":
        state, tok = tuple(s.numpy() for s in state), tok.numpy()
    with torch.no_grad():
        for _ in range(50):
            _, state = runner(tok, state)
        t0 = time.perf_counter()
        for _ in range(steps):
            _, state = runner(tok, state)
        return (time.perf_counter() - t0) / steps


def word_ids(text: str, vocab: dict) -> np.ndarray:
    unk = vocab["<unk>"]
    return np.array([vocab.get(w, unk) for line in text.splitlines() for w in line.split() + ["<eos>"]], np.int64)


def train_briefly(train_ids: np.ndarray, vocab_size: int, seconds: float, seed: int = 0) -> tuple[RecurrentLM, int]:
    torch.manual_seed(seed)
    model = RecurrentLM(vocab_size, **CFG)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    B, T = 16, 35  # small batches: more updates in a short budget
    L = (len(train_ids) - 1) // B
    data = torch.from_numpy(train_ids[: B * L + 1])
    streams = torch.stack([data[b * L: b * L + L + 1] for b in range(B)])
    state, i, steps, t0 = None, 0, 0, time.time()
    model.train()
    while time.time() - t0 < seconds:
        if i + T >= L:
            i, state = 0, None
        x, y = streams[:, i:i + T], streams[:, i + 1:i + T + 1]
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        i, steps = i + T, steps + 1
    return model.eval(), steps


def stepped_ppl(runner, kind, model, ids: np.ndarray, streams: int = 16) -> float:
    L = (len(ids) - 1) // streams
    data = np.stack([ids[b * L: b * L + L + 1] for b in range(streams)])  # (S, L+1)
    state = model.init_state(streams)
    if kind == "numpy":
        state = tuple(s.numpy() for s in state)
    nll = 0.0
    with torch.no_grad():
        for t in range(L):
            tok = data[:, t] if kind == "numpy" else torch.from_numpy(data[:, t])
            logits, state = runner(tok, state)
            logits = torch.as_tensor(logits)
            nll -= torch.log_softmax(logits.float(), -1).gather(1, torch.from_numpy(data[:, t + 1])[:, None]).sum().item()
    return math.exp(nll / (L * streams))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=500, help="timed steps per runtime (after 50 warm-up steps)")
    ap.add_argument("--train-seconds", type=float, default=150)
    ap.add_argument("--test-tokens", type=int, default=16_000, help="score the first N test tokens (0: all 245k)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())

    DATA = wikitext2_dir()
    valid, test = (DATA / "valid.txt").read_text(), (DATA / "test.txt").read_text()
    counts = Counter(w for line in valid.splitlines() for w in line.split() + ["<eos>"])
    words = ["<unk>"] + [w for w, _ in counts.most_common() if w != "<unk>"][: 10_000 - 1]
    vocab = {w: i for i, w in enumerate(words)}
    train_ids, test_ids = word_ids(valid, vocab), word_ids(test, vocab)
    if args.test_tokens:
        test_ids = test_ids[: args.test_tokens]
    print(f"torch {torch.__version__}, {args.threads} thread(s); vocab {len(vocab)}; model 2x512 LSTM "
          f"({sum(p.numel() for p in RecurrentLM(len(vocab), **CFG).parameters()) / 1e6:.1f}M params)")

    t0 = time.time()
    torch.set_num_threads(os.cpu_count() or 1)  # training uses every core; measurements use --threads
    model, steps = train_briefly(train_ids, len(vocab), args.train_seconds)
    torch.set_num_threads(args.threads)
    print(f"trained {steps} steps (batch 16 x 35) in {time.time() - t0:.0f}s on WikiText-2 valid "
          f"({len(train_ids)} tokens); scoring {len(test_ids)} test tokens")

    run = runners(model, tmp, args.threads)
    print(f"\n{'runtime':<18} {'step ms (B=1)':>14} {'vs eager':>9} {'test ppl':>10} {'ppl change':>11}")
    base_ms = base_ppl = None
    for name, (kind, r) in run.items():
        ms = latency(r, kind, model, args.steps) * 1e3
        ppl = stepped_ppl(r, kind, model, test_ids)
        base_ms = base_ms or ms
        base_ppl = base_ppl or ppl
        print(f"{name:<18} {ms:>14.3f} {base_ms / ms:>8.2f}x {ppl:>10.2f} {100 * (ppl / base_ppl - 1):>+10.2f}%")


if __name__ == "__main__":
    main()
