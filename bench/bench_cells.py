"""Training speed of every registered cell against the fused ``lstm`` (nn.LSTM), in one run.

For each hidden size, every cell does forward + backward over the same (batch, bptt) window; the
cells take turns (interleaved rounds) so that a machine shared with other work slows them alike,
and the median time per cell is reported as tokens/s and as a ratio to the fused LSTM
(goal for the custom cells: at most 1.5x). ``naive_loop`` is the obvious Python loop over
``nn.LSTMCell`` (one input GEMM and one recurrent GEMM per step, plain autograd), for reference.

    python bench/bench_cells.py                       # hidden 256 and 512, eager per-step math
    python bench/bench_cells.py --compile script      # TorchScript per-step math
    python bench/bench_cells.py --compile-times       # cold and warm torch.compile times too
    python bench/bench_cells.py --mlstm-forms --hidden 256 --bptt 256   # chunkwise mLSTM vs its recurrence

``--mlstm-forms`` adds the rows of issue 17: the ``mlstm`` cell trained in its chunkwise-parallel form
(``form=chunkwise``, chunks of ``--chunk-size``) against the same weights trained through its
step-by-step recurrence (``form=recurrent``), same window, interleaved rounds (goal: >= 3x at T=256).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

from lstm_pipeline.cells.custom import CustomCell
from lstm_pipeline.registry import CELLS


class NaiveLoopLSTM(nn.Module):
    """A Python loop over nn.LSTMCell, written the obvious way (reference only, not a registered cell)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(input_size if k == 0 else hidden_size, hidden_size)
                                   for k in range(num_layers))

    def forward(self, x):
        for cell in self.cells:
            h = c = x.new_zeros(x.size(0), cell.hidden_size)
            outs = []
            for t in range(x.size(1)):
                h, c = cell(x[:, t], (h, c))
                outs.append(h)
            x = torch.stack(outs, 1)
        return x, None


def build(name: str, hidden: int, layers: int, compile_mode: str):
    if name == "naive_loop":
        return NaiveLoopLSTM(hidden, hidden, layers)
    cfg = {"name": name}
    if issubclass(CELLS.get(name), CustomCell) and compile_mode != "eager":
        cfg["compile"] = compile_mode
    return CELLS.build(cfg, input_size=hidden, hidden_size=hidden, num_layers=layers, dropout=0.0)


def train_step(cell, x):
    y, _ = cell(x)
    y.sum().backward()


def bench_hidden(hidden: int, args) -> list[tuple[str, float]]:
    torch.manual_seed(0)
    names = ["lstm"] + [n for n in CELLS.names() if n != "lstm"] + ["naive_loop"]
    cells = {n: build(n, hidden, args.layers, args.compile) for n in names}
    return time_training(cells, hidden, args, warmup=2)


def time_training(cells: dict, hidden: int, args, warmup: int) -> list[tuple[str, float]]:
    """(name, median seconds of one training step over args.rounds, the cells in turns) for each cell,
    after ``warmup`` steps each (and compilation, if any)."""
    x = torch.randn(args.batch, args.bptt, hidden)
    for cell in cells.values():
        for _ in range(warmup):
            train_step(cell, x)
    times = {n: [] for n in cells}
    for _ in range(args.rounds):
        for n, cell in cells.items():
            cell.zero_grad(set_to_none=True)
            start = time.perf_counter()
            train_step(cell, x)
            times[n].append(time.perf_counter() - start)
    return [(n, statistics.median(times[n])) for n in cells]


def bench_mlstm_forms(hidden: int, args) -> list[tuple[str, float]]:
    """Training time of the mlstm cell, chunkwise-parallel vs its step-by-step recurrence (same weights)."""
    torch.manual_seed(0)
    forms = {f"mlstm chunkwise (chunk {args.chunk_size})": {"form": "chunkwise", "chunk_size": args.chunk_size},
             "mlstm recurrent (step by step)": {"form": "recurrent"}}
    cells = {n: CELLS.build({"name": "mlstm", "num_heads": args.heads, **kw}, input_size=hidden, hidden_size=hidden,
                            num_layers=args.layers, dropout=0.0) for n, kw in forms.items()}
    first = next(iter(cells.values()))
    for cell in cells.values():
        cell.load_state_dict(first.state_dict())
    return time_training(cells, hidden, args, warmup=1)


COMPILE_PROBE = """
import time, torch
from lstm_pipeline.registry import CELLS
cell = CELLS.build({{"name": "{name}", "compile": "inductor"}}, input_size={h}, hidden_size={h}, num_layers=1, dropout=0.0)
x = torch.randn({b}, {t}, {h})
start = time.perf_counter()
for _ in range(2):  # the first step with grad-free initial state, the second with a carried one
    y, s = cell(x); y.sum().backward()
print(time.perf_counter() - start)
"""


def compile_times(args) -> None:
    """Cold (empty inductor cache) and warm (same cache, new process) torch.compile times."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        code = COMPILE_PROBE.format(name=args.compile_cell, h=256, b=args.batch, t=args.bptt)
        print(f"\ntorch.compile (inductor) of the per-step math of '{args.compile_cell}', first two training "
              f"steps incl. compilation, in a fresh process:")
        for label in ("cold (empty cache)", "warm (cache from the run before)"):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            print(f"  {label}: {float(out.stdout.strip().splitlines()[-1]):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per cell (median is reported)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--compile", default="eager", choices=["eager", "script", "inductor"],
                    help="how custom cells run their per-step math")
    ap.add_argument("--compile-times", action="store_true", help="also measure cold/warm torch.compile time")
    ap.add_argument("--compile-cell", default="lstm_cell")
    ap.add_argument("--mlstm-forms", action="store_true",
                    help="only the mlstm rows: chunkwise-parallel training vs the step-by-step recurrence")
    ap.add_argument("--chunk-size", type=int, default=64, help="mlstm chunk size for --mlstm-forms")
    ap.add_argument("--heads", type=int, default=4, help="mlstm heads for --mlstm-forms")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, bptt {args.bptt}, "
          f"{args.layers} layer(s), training forward+backward, per-step math: {args.compile}; load average {load}\n")
    if args.mlstm_forms:
        print(f"| mlstm ({args.heads} heads) | hidden | ms/step | tokens/s | speed-up over the recurrence |")
        print("|---|---:|---:|---:|---:|")
        for hidden in args.hidden:
            results = bench_mlstm_forms(hidden, args)
            slow = results[-1][1]
            for name, sec in results:
                print(f"| {name} | {hidden} | {sec * 1e3:.1f} | {args.batch * args.bptt / sec:,.0f} | "
                      f"{slow / sec:.2f}x |", flush=True)
        print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        return
    print("| cell | hidden | ms/step | tokens/s | time vs fused lstm |")
    print("|---|---:|---:|---:|---:|")
    tokens = args.batch * args.bptt
    for hidden in args.hidden:
        results = bench_hidden(hidden, args)
        base = results[0][1]
        for name, sec in results:
            print(f"| {name} | {hidden} | {sec * 1e3:.1f} | {tokens / sec:,.0f} | {sec / base:.2f}x |", flush=True)
    if args.compile_times:
        compile_times(args)


if __name__ == "__main__":
    main()
