"""Training throughput of the Mogrifier LSTM (plugins/lstm-pipeline-mogrifier) against the fused
``lstm`` cell at the same sizes, measured in the same run.

Each model is a RecurrentLM (embedding -> cell -> head) trained with Adam on random tokens; the
timing covers forward, backward and the optimiser step. Tokens/s and the ratio to the fused
``lstm`` are printed. The Mogrifier does more work per step (the gate rounds, and its input
projection cannot be hoisted out of the time loop) and runs a Python loop over time, so expect a
ratio well below 1.

    python bench/bench_mogrifier.py                      # CPU, defaults
    python bench/bench_mogrifier.py --device cuda --hidden 512 --batch 64
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.registry import CELLS

ROOT = Path(__file__).resolve().parents[1]


def mogrifier_class():
    if "mogrifier" in CELLS:
        return CELLS.get("mogrifier")
    sys.path.insert(0, str(ROOT / "plugins" / "lstm-pipeline-mogrifier" / "src"))  # not installed: use the source
    from lstm_pipeline_mogrifier.cell import MogrifierLSTM

    return MogrifierLSTM


def build(kind: str, args) -> RecurrentLM:
    torch.manual_seed(0)
    model = RecurrentLM(args.vocab, {"name": "lstm"}, embedding_dim=args.hidden, hidden_size=args.hidden,
                        num_layers=args.layers)
    if kind != "lstm":
        rounds, rank = {"mogrifier": (5, 0), "mogrifier-r5-k32": (5, 32), "mogrifier-r0": (0, 0)}[kind]
        model.layers[0] = mogrifier_class()(args.hidden, args.hidden, args.layers, rounds=rounds, rank=rank)
    return model.to(args.device)


def make_trainer(model: RecurrentLM, args):
    """A closure that times ``args.steps`` training steps (after ``args.warmup`` on its first call)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(args.vocab, (args.batch, args.bptt + 1), generator=g).to(args.device)
    state = None

    def step():
        nonlocal state
        logits, state = model(x[:, :-1], state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()

    def measure() -> float:
        if args.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.steps):
            step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        return args.steps * args.batch * args.bptt / (time.perf_counter() - t)

    return measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--bptt", type=int, default=32)
    p.add_argument("--vocab", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds over the cells; the best is kept")
    p.add_argument("--cells", default="lstm,mogrifier-r0,mogrifier,mogrifier-r5-k32")
    args = p.parse_args()
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} hidden={args.hidden} "
          f"layers={args.layers} batch={args.batch} bptt={args.bptt} steps={args.steps} repeats={args.repeats} (best of)")
    kinds = args.cells.split(",")
    timers = {kind: make_trainer(build(kind, args), args) for kind in kinds}
    results = {kind: 0.0 for kind in kinds}
    for _ in range(args.repeats):  # interleaved, so that a noisy moment does not hit one cell only
        for kind in kinds:
            results[kind] = max(results[kind], timers[kind]())
    base = results.get("lstm")
    print(f"{'cell':<20} {'train tokens/s':>15} {'vs fused lstm':>14}")
    for kind, tps in results.items():
        ratio = f"{tps / base:.3f}x" if base else "-"
        print(f"{kind:<20} {tps:>15.0f} {ratio:>14}")


if __name__ == "__main__":
    main()
