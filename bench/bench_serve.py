"""``lstm-pipeline serve`` under load, against ``generate``'s batch-64 nucleus sampling, in one run.

Model: bench_generate's 2-layer, 512-hidden LSTM with a 10k vocabulary (random weights, peaked
output layer), saved as a model directory with a 10k-word tokenizer; the server is the real CLI
(``lstm-pipeline serve``, uvicorn) in a subprocess on a free loopback port; the clients are httpx
streams in this process (they read server-sent events and count them).

Figures (issue 16):

1. throughput: 64 concurrent streaming clients (nucleus top_p 0.9, N tokens each) vs
   ``Nucleus(top_p=0.9).generate`` on 64 rows in this process; goal >= 0.8x;
2. time to first token of one client while 63 others stream (p50 over 20 requests); goal <= 50 ms;
3. server memory (VmRSS) after 100 and after 1,000 sequential requests; goal: flat;
4. a disconnect frees its row within one step (engine steps between the close and the row leaving).

    OMP_NUM_THREADS=2 python bench/bench_serve.py            # a few minutes
    python bench/bench_serve.py --quick                      # fewer tokens and requests
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import HIDDEN, LAYERS, VOCAB, build_model, prompts  # noqa: E402

from lstm_pipeline.generation.strategies import Nucleus  # noqa: E402


def model_dir(root: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    from lstm_pipeline.hub import save_pretrained
    from lstm_pipeline.tokenization.base import TextTokenizer

    vocab = {"<unk>": 0, **{f"w{i}": i for i in range(1, VOCAB)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    model = build_model(flat=False)
    cfg = {"cell": {"name": "lstm"}, "embedding_dim": HIDDEN, "hidden_size": HIDDEN, "num_layers": LAYERS}
    return save_pretrained(model, cfg, TextTokenizer(tk), root / "model", extra={"bos_token_id": 0}, model_card=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its child processes (the server and its engine process)."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mib(int(child))
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


async def stream(http: httpx.AsyncClient, url: str, body: dict, first: list | None = None,
                 stop_after: int | None = None) -> int:
    """One streaming request; returns the tokens received. ``first`` gets the seconds to the first
    token; ``stop_after`` closes the connection after that many events."""
    t0 = time.perf_counter()
    n = 0
    async with http.stream("POST", url + "/v1/completions", json={**body, "stream": True}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if n == 0 and first is not None:
                first.append(time.perf_counter() - t0)
            n += len(json.loads(line[6:])["choices"])
            if stop_after is not None and n >= stop_after:
                break
    return n


async def health(http, url) -> dict:
    return (await http.get(url + "/health")).json()


async def wait_idle(http, url, seconds=60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        h = await health(http, url)
        if h["active_rows"] == 0 and h["queued_rows"] == 0:
            return h
        await asyncio.sleep(0.01)
    raise RuntimeError(f"server still busy: {h}")


async def run_clients(url: str, pid: int, args) -> dict:
    nucleus = {"temperature": 1.0, "top_p": 0.9}
    rows = prompts(64)
    out = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        # warm up
        await asyncio.gather(*[stream(http, url, {"prompt": rows[i], "max_tokens": 4, **nucleus}) for i in range(64)])
        # 1. throughput: 64 concurrent clients
        best = 0.0
        kids = children(pid)
        for _ in range(args.repeats):
            await wait_idle(http, url)
            c0 = (cpu_seconds(pid), sum(cpu_seconds(k) for k in kids), time.process_time())
            t0 = time.perf_counter()
            got = await asyncio.gather(*[stream(http, url, {"prompt": rows[i], "max_tokens": args.tokens, "seed": i,
                                                            **nucleus}) for i in range(64)])
            dt = time.perf_counter() - t0
            assert sum(got) == 64 * args.tokens, sum(got)
            c1 = (cpu_seconds(pid), sum(cpu_seconds(k) for k in kids), time.process_time())
            if 64 * args.tokens / dt > best:
                best = 64 * args.tokens / dt
                out["cpu_web"], out["cpu_engine"], out["cpu_clients"] = (b - a for a, b in zip(c0, c1))
                out["serve_wall"] = dt
        out["serve_64_tokens_per_s"] = best
        # 2. time to first token while 63 others stream
        await wait_idle(http, url)
        background = [asyncio.create_task(stream(http, url, {"prompt": rows[i], "max_tokens": 100000 // 64 * 64,
                                                             **nucleus})) for i in range(63)]
        while (await health(http, url))["active_rows"] < 63:
            await asyncio.sleep(0.01)
        firsts: list[float] = []
        for k in range(20):
            await stream(http, url, {"prompt": rows[63], "max_tokens": 1, **nucleus}, first=firsts)
            await asyncio.sleep(0.02)
        h0 = await health(http, url)
        out["ttft_p50_ms"] = 1e3 * statistics.median(firsts)
        out["ttft_p90_ms"] = 1e3 * sorted(firsts)[int(0.9 * len(firsts)) - 1]
        out["ttft_background_rows"] = h0["active_rows"]
        # 4. disconnect while the 63 stream: time from the close to the row leaving, in steps
        before = await health(http, url)
        base_rows = before["active_rows"]
        await stream(http, url, {"prompt": rows[63], "max_tokens": 100000, **nucleus}, stop_after=2)
        t_close = time.perf_counter()
        while True:
            h = await health(http, url)
            if h["active_rows"] <= base_rows:
                break
            await asyncio.sleep(0.001)
        t_free = time.perf_counter()
        # the step time meanwhile: steps over a second of the 63 streams
        s0, t0 = (await health(http, url))["steps"], time.perf_counter()
        await asyncio.sleep(1.0)
        s1, t1 = (await health(http, url))["steps"], time.perf_counter()
        step_ms = 1e3 * (t1 - t0) / max(1, s1 - s0)
        out["disconnect_ms"], out["step_ms"] = 1e3 * (t_free - t_close), step_ms
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await wait_idle(http, url)
        # 3. memory over sequential requests
        rss = {}
        for i in range(1, args.sequential + 1):
            await stream(http, url, {"prompt": rows[i % 64], "max_tokens": 8, **nucleus})
            if i in (100, args.sequential):
                rss[i] = rss_mib(pid)
        out["rss_mib"] = rss
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=200, help="tokens per client in the throughput run")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs; the best is reported")
    ap.add_argument("--sequential", type=int, default=1000, help="sequential requests for the memory figure")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.repeats, args.sequential = 60, 1, 200
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        mdir = model_dir(Path(tmp))
        # generate's batch-64 nucleus, in this process, with the same model and threads
        from lstm_pipeline.hub import load_pretrained

        model = load_pretrained(mdir)[0]
        dec = Nucleus(top_p=0.9)
        dec.generate(model, prompts(64), max_new_tokens=5)
        gen_best, gen_cpu = 0.0, None
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            dec.generate(model, prompts(64), max_new_tokens=args.tokens, generator=torch.Generator().manual_seed(0))
            if 64 * args.tokens / (time.perf_counter() - t0) > gen_best:
                gen_best, gen_cpu = 64 * args.tokens / (time.perf_counter() - t0), time.process_time() - c0
        # the batching engine alone (no HTTP): 64 single-row requests, each with its own generator
        import threading

        from lstm_pipeline.serve.engine import Engine, Group

        eng_best = 0.0
        for _ in range(args.repeats):
            done, left = threading.Event(), [64]

            def emit(group, events):
                left[0] -= sum(e.finish_reason is not None for e in events)
                if left[0] == 0:
                    done.set()

            eng = Engine(model, load_pretrained(mdir)[1], max_batch=64).start()
            t0 = time.perf_counter()
            for i, p in enumerate(prompts(64)):
                eng.submit(Group([p], dec, args.tokens, emit=emit, seed=i))
            done.wait()
            eng_best = max(eng_best, 64 * args.tokens / (time.perf_counter() - t0))
            eng.stop()
        del model
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "serve.log", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "lstm_pipeline.cli", "serve", f"run={mdir}", f"port={port}",
                                 "log_level=warning", "max_tokens=100000", "max_streams=300", "max_batch=64"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the server did not start:\n{log.read()}")
                time.sleep(0.2)
            res = asyncio.run(run_clients(url, proc.pid, args))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    ratio = res["serve_64_tokens_per_s"] / gen_best
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"torch {torch.__version__}, {threads} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"model: {LAYERS}x{HIDDEN} LSTM, vocab {VOCAB}; {args.tokens} tokens per row")
    print(f"generate, nucleus top_p=0.9, batch 64:        {gen_best:8.0f} tokens/s")
    print(f"the batching engine alone (no HTTP), 64 rows: {eng_best:8.0f} tokens/s  = {eng_best / gen_best:.2f}x generate")
    print(f"serve, 64 concurrent streaming clients:       {res['serve_64_tokens_per_s']:8.0f} tokens/s  "
          f"= {ratio:.2f}x generate (goal >= 0.8x)")
    n = 64 * args.tokens
    print(f"tokens per CPU-second (independent of other load): generate {n / gen_cpu:.0f}; serve's engine process "
          f"{n / res['cpu_engine']:.0f} (plus the web process {res['cpu_web']:.2f} s and the clients "
          f"{res['cpu_clients']:.2f} s of CPU for {n} tokens in {res['serve_wall']:.2f} s)")
    print(f"time to first token, 1 client + {res['ttft_background_rows']} streaming: p50 {res['ttft_p50_ms']:.1f} ms, "
          f"p90 {res['ttft_p90_ms']:.1f} ms (goal p50 <= 50 ms)")
    r = res["rss_mib"]
    keys = sorted(r)
    print(f"server memory: {', '.join(f'{r[k]:.0f} MiB after {k} requests' for k in keys)} "
          f"(growth {r[keys[-1]] - r[keys[0]]:+.1f} MiB; goal flat)")
    print(f"disconnect: the row left the batch {res['disconnect_ms']:.1f} ms after the client closed, "
          f"{res['disconnect_ms'] / res['step_ms']:.1f} steps of {res['step_ms']:.1f} ms (goal <= 1 step; "
          f"includes this client's polling of /health)")


if __name__ == "__main__":
    main()
