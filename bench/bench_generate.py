"""Generation speed and memory of lstm-pipeline's decoders against the obvious loop, in one run.

Model: a 2-layer, 512-hidden LSTM language model with a 10k vocabulary and random weights (the
output layer is scaled so that next-token distributions are as peaked as a trained model's; pass
--flat to keep the raw near-uniform initialisation, the worst case for nucleus filtering).

Baseline ("bare loop"): step ``nn.LSTM`` with one time step at a time and sample with
``torch.multinomial`` on the softmax, the implementation most people would write.

    python bench/bench_generate.py                 # everything, a few minutes
    python bench/bench_generate.py --threads 1     # pin torch's intra-op threads
    python bench/bench_generate.py --quick         # fewer tokens, skips the 10k-token memory run
    python bench/bench_generate.py --device cuda --quick   # on a GPU (no int8 row: int8 is CPU-only)

Goals (issue 5): batch 1 greedy and nucleus >= 400 tokens/s and >= 3x the bare loop; batch 64 nucleus
>= 4000 tokens/s; beam search 5 beams x 8 prompts <= 1.3x the per-step time of sampling 40 rows;
generating 10,000 tokens uses no more memory than generating 100. Issue 15: ``quantize=int8`` at batch 1
(what ``from_pretrained(quantize="int8")`` / ``generate quantize=int8`` run) >= 3x the float ("eager")
step speed of the library's own greedy decoding, perplexity within 1% of float's: the perplexity of
both on the same 2,000 tokens (sampled from the float model at temperature 1), scored step by step.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn

from lstm_pipeline.generation.beam import BeamSearch
from lstm_pipeline.generation.strategies import Greedy, Nucleus, Sample
from lstm_pipeline.models.lm import RecurrentLM

VOCAB, HIDDEN, LAYERS = 10_000, 512, 2
DEVICE = "cpu"  # --device


def build_model(flat: bool) -> RecurrentLM:
    torch.manual_seed(0)
    model = RecurrentLM(VOCAB, {"name": "lstm"}, embedding_dim=HIDDEN, hidden_size=HIDDEN, num_layers=LAYERS).eval()
    if not flat:  # peaked, context-dependent next-token distributions like a trained word model's:
        with torch.no_grad():  # a Zipf-like unigram prior (bias) plus a sharpened context term
            g = torch.Generator().manual_seed(0)
            model.head.weight.mul_(30.0)
            model.head.bias.copy_(-1.3 * torch.log(torch.arange(1.0, VOCAB + 1))[torch.randperm(VOCAB, generator=g)])
    return model.to(DEVICE)


def prompts(batch: int, length: int = 8) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (batch, length), generator=g).tolist()


@torch.inference_mode()
def bare_loop(model: RecurrentLM, batch: int, n: int) -> float:
    """The obvious implementation: nn.LSTM stepped with T=1, torch.multinomial. Returns seconds."""
    lstm: nn.LSTM = model.layers[0].rnn
    emb, head = model.embedding, model.head
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out, state = lstm(emb(torch.tensor(prompts(batch), device=DEVICE)))
    logits = head(out[:, -1])
    for _ in range(n):
        tok = torch.multinomial(torch.softmax(logits, -1), 1)  # (B, 1)
        out, state = lstm(emb(tok), state)
        logits = head(out[:, -1])
    return time.perf_counter() - t0


def ours(model, decoder, batch: int, n: int) -> float:
    t0 = time.perf_counter()
    decoder.generate(model, prompts(batch), max_new_tokens=n, generator=torch.Generator(DEVICE).manual_seed(0))
    if DEVICE != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def best_interleaved(fns, repeats: int) -> list[float]:
    """The best time of each of ``fns``, run in turns (a, b, c, a, b, c, ...): load drift on this
    shared machine then hits the baseline and the runners alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            times[i].append(fn())
    return [min(t) for t in times]


def nucleus_size(model, top_p=0.9) -> float:
    with torch.inference_mode():
        logits, _ = model(torch.tensor(prompts(16, 32), device=DEVICE))
        p = logits.reshape(-1, VOCAB).softmax(-1).sort(-1, descending=True).values
        return float(((p.cumsum(-1) - p) < top_p).sum(-1).float().mean())


def int8_model(flat: bool) -> RecurrentLM:
    """The same model through the path ``from_pretrained(quantize="int8")`` takes (hub.quantize_model)."""
    from lstm_pipeline.kernels.int8 import quantize_model

    return quantize_model(build_model(flat), "int8")


@torch.inference_mode()
def step_perplexity(model: RecurrentLM, tokens: list[int]) -> float:
    """exp(mean NLL) of ``tokens[1:]`` given the ones before, one ``step`` per token (the decoding path)."""
    state, nll = None, 0.0
    for a, b in zip(tokens[:-1], tokens[1:]):
        logits, state = model.step(torch.tensor([a]), state)
        nll -= torch.log_softmax(logits.float(), -1)[0, b].item()
    return float(torch.exp(torch.tensor(nll / (len(tokens) - 1))))


def int8_rows(model, args, n1, R, report, base1) -> None:
    """The int8 rows: greedy at batch 1, float and quantize=int8 in turns; the perplexity change."""
    qmodel = int8_model(args.flat)
    print(f"int8 (from_pretrained(quantize='int8') / generate quantize=int8), batch 1, {n1} tokens "
          f"(best of {R}, in turns with float):")
    t_float, t_int8 = best_interleaved([lambda: ours(model, Greedy(), 1, n1),
                                        lambda: ours(qmodel, Greedy(), 1, n1)], R)
    eager = report("greedy, float (eager)", n1, t_float, base1)
    rate8 = report("greedy, quantize=int8", n1, t_int8, base1)
    sample = Sample().generate(model, prompts(1), max_new_tokens=2000, generator=torch.Generator().manual_seed(2))
    text = prompts(1)[0] + list(sample.sequences[0])
    ppl_f, ppl_q = step_perplexity(model, text), step_perplexity(qmodel, text)
    change = 100 * (ppl_q / ppl_f - 1)
    print(f"  int8 vs float: {rate8 / eager:.2f}x the eager step speed (goal >= 3x); perplexity on {len(text) - 1} "
          f"sampled tokens {ppl_f:.3f} -> {ppl_q:.3f} ({change:+.2f}%, goal within 1%)", flush=True)


def memory_child(n: int, flat: bool) -> None:
    """Generate n tokens at batch 1 (greedy) and print the peak RSS growth in MiB as JSON."""
    model = build_model(flat)
    Greedy().generate(model, prompts(1), max_new_tokens=2)  # warm up allocator and kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as f:
        rss_now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    t0 = time.perf_counter()
    Greedy().generate(model, prompts(1), max_new_tokens=n)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tokens": n, "rss_before_mib": rss_now / 1024, "peak_mib": peak / 1024,
                      "growth_mib": (peak - max(before, rss_now)) / 1024, "seconds": dt}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--tokens", type=int, default=300, help="tokens per run at batch 1")
    ap.add_argument("--repeats", type=int, default=5, help="runs per measurement; the best is reported")
    ap.add_argument("--flat", action="store_true", help="keep the near-uniform random output layer")
    ap.add_argument("--quick", action="store_true", help="fewer tokens; skip the 10,000-token memory run")
    ap.add_argument("--int8-only", action="store_true", help="only the int8 rows (with the float greedy they compare to)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the int8 row and the memory run are CPU-only)")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        return memory_child(args.memory_child, args.flat)

    n1 = 100 if args.quick else args.tokens
    n64 = 30 if args.quick else 100
    model = build_model(args.flat)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: {LAYERS}-layer {HIDDEN}-hidden LSTM, "
          f"vocab {VOCAB}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; "
          f"mean nucleus (top_p 0.9) {nucleus_size(model):.0f} tokens")
    rows = []

    def report(name, tokens, seconds, base=None, goal=""):
        rate = tokens / seconds
        ratio = f"{rate / base:5.2f}x bare" if base else ""
        rows.append((name, rate, ratio, goal))
        print(f"  {name:<38} {rate:9.0f} tokens/s  {ratio:<12} {goal}", flush=True)
        return rate

    R = args.repeats
    if args.int8_only:
        base1 = report("bare loop (nn.LSTM T=1 + multinomial)", n1, min(bare_loop(model, 1, n1) for _ in range(R)))
        return int8_rows(model, args, n1, R, report, base1)
    print(f"batch 1, {n1} tokens (best of {R}, the three runners in turns):")
    t_bare, t_greedy, t_nucleus = best_interleaved([lambda: bare_loop(model, 1, n1),
                                                     lambda: ours(model, Greedy(), 1, n1),
                                                     lambda: ours(model, Nucleus(top_p=0.9), 1, n1)], R)
    base1 = report("bare loop (nn.LSTM T=1 + multinomial)", n1, t_bare)
    report("greedy", n1, t_greedy, base1, "goal >= 400 and >= 3x")
    report("nucleus top_p=0.9", n1, t_nucleus, base1, "goal >= 400 and >= 3x")

    print(f"batch 64, {n64} tokens per row (best of {R}, in turns):")
    t_bare, t_nucleus = best_interleaved([lambda: bare_loop(model, 64, n64),
                                          lambda: ours(model, Nucleus(top_p=0.9), 64, n64)], R)
    base64 = report("bare loop (nn.LSTM T=1 + multinomial)", 64 * n64, t_bare)
    report("nucleus top_p=0.9", 64 * n64, t_nucleus, base64, "goal >= 4000")

    print(f"beam search 5 beams x 8 prompts vs sampling 40 rows, {n64} steps (best of {R}, in turns):")
    t_beam, t_samp = best_interleaved([lambda: ours(model, BeamSearch(num_beams=5), 8, n64),
                                       lambda: ours(model, Sample(), 40, n64)], R)
    print(f"  per step: beam {1e3 * t_beam / n64:.2f} ms, sampling 40 rows {1e3 * t_samp / n64:.2f} ms, "
          f"ratio {t_beam / t_samp:.2f} (goal <= 1.3)", flush=True)

    if DEVICE == "cpu":
        int8_rows(model, args, n1, R, report, base1)

    if not args.quick and DEVICE == "cpu":
        print("memory (peak RSS growth while generating, batch 1 greedy, separate processes):")
        extra = ["--threads", str(args.threads)] if args.threads else []
        extra += ["--flat"] if args.flat else []
        results = {}
        for n in (100, 10_000):
            out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), *extra],
                                 capture_output=True, text=True, check=True).stdout
            results[n] = json.loads(out.strip().splitlines()[-1])
            r = results[n]
            print(f"  {n:>6} tokens: peak RSS {r['peak_mib']:.1f} MiB, growth {r['growth_mib']:.2f} MiB "
                  f"({n / r['seconds']:.0f} tokens/s)", flush=True)
        print(f"  10,000 vs 100 tokens: peak RSS difference {results[10_000]['peak_mib'] - results[100]['peak_mib']:+.2f} MiB "
              f"(the generated ids themselves: {10_000 * 8 / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
