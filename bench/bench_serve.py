"""``lstm-pipeline serve`` under load, against ``generate``'s batch-64 nucleus sampling, in one run.

Model: bench_generate's 2-layer, 512-hidden LSTM with a 10k vocabulary (random weights, peaked
output layer), saved as a model directory with a 10k-word tokenizer; the server is the real CLI
(``lstm-pipeline serve``, uvicorn) in a subprocess on a free loopback port, started first; the
clients are streams in this process that take the token count from the stream's final ``usage``
(``stream_options.include_usage``): by default aiohttp streams that read every byte but decode only
that last event (``--client lean``: clients that would run on other machines cost the server's two
CPUs as little as they can), or httpx streams that decode every event as JSON (``--client httpx``,
what an application showing the text does; about 80-100 us of CPU per event).

Figures (issue 16):

1. throughput, in rounds of three run in turns (so that load drift on a shared machine hits all
   three): ``Nucleus(top_p=0.9).generate`` on 64 rows x N tokens in this process (prefill included);
   the batching engine alone (no HTTP, its loop in this process's main thread as in the server's
   engine process, 64 single-row requests); the
   server: 64 concurrent streaming clients, N tokens each, timed from the moment the 64 requests
   are sent to the last ``[DONE]`` (so admission, prefill and the clients' own parsing count).
   The best of the rounds of each is compared; goal: the server >= 0.8x generate. N = 400 by
   default, so that the few steps while the 64 requests join are a small part of the run, as in
   a server that runs for longer than one request; the time to the 64th client's first token is
   printed to show how long that took;
2. time to first token of one client while 63 others stream (p50 over 20 requests); goal <= 50 ms;
3. server memory (VmRSS) after 100 and after 1,000 sequential requests; goal: flat;
4. a disconnect frees its row within one step (engine steps between the close and the row leaving).

    OMP_NUM_THREADS=2 python bench/bench_serve.py            # a few minutes
    OMP_NUM_THREADS=2 python bench/bench_serve.py --quick    # 2 rounds, 200 sequential requests
    OMP_NUM_THREADS=2 python bench/bench_serve.py --quick --client httpx   # clients that decode every event
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

    from lstm_pipeline.artifacts.model_dir import save_pretrained
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
                 stop_after: int | None = None) -> tuple[int, int]:
    """One streaming request through httpx, parsing every event as JSON (what an application that
    shows the text does); returns ``(tokens, events)``: the tokens the server reports in the
    stream's final ``usage`` (``stream_options.include_usage``; several tokens may share one event
    when the client falls behind) and the server-sent events that carried text. ``first`` gets the
    seconds to the first event; ``stop_after`` closes the connection after that many events."""
    t0 = time.perf_counter()
    tokens = events = 0
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with http.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if not chunk["choices"]:
                continue
            if events == 0 and first is not None:
                first.append(time.perf_counter() - t0)
            events += 1
            if stop_after is not None and events >= stop_after:
                break
    return tokens, events


async def stream_lean(http, url: str, body: dict, first: list | None = None,
                      stop_after: int | None = None) -> tuple[int, int]:
    """The same request through aiohttp (its C HTTP parser), reading every byte of the stream but
    decoding only the final ``usage`` event: a client that costs the shared CPUs as little as a
    real one can, so that the figure measures the server (its clients would run elsewhere). Events
    are counted by their blank-line ends, less the ``usage`` and ``[DONE]`` events."""
    t0 = time.perf_counter()
    ends = 0
    tail = b""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for data in r.content.iter_any():
            if ends == 0 and first is not None:
                first.append(time.perf_counter() - t0)
            ends += data.count(b"\n\n")
            tail = (tail + data)[-8192:]
            if stop_after is not None and ends >= stop_after:
                return 0, ends
    usage = json.loads(tail.rsplit(b"data: [DONE]", 1)[0].rstrip().rsplit(b"data: ", 1)[1])["usage"]
    return usage["completion_tokens"], ends - 2


async def health(http, url) -> dict:
    if isinstance(http, httpx.AsyncClient):
        return (await http.get(url + "/health")).json()
    async with http.get(url + "/health") as r:
        return await r.json()


async def wait_idle(http, url, seconds=60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        h = await health(http, url)
        if h["active_rows"] == 0 and h["queued_rows"] == 0:
            return h
        await asyncio.sleep(0.01)
    raise RuntimeError(f"server still busy: {h}")


def run_generate(model, tokens: int) -> tuple[float, float]:
    """``generate``'s batch-64 nucleus in this process: (wall seconds, CPU seconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    Nucleus(top_p=0.9).generate(model, prompts(64), max_new_tokens=tokens, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - t0, time.process_time() - c0


def run_engine(model, tokenizer, tokens: int) -> tuple[float, float]:
    """The batching engine alone (no HTTP), its loop in this process's main thread as the server's
    engine process runs it: 64 single-row requests submitted at once, each with its own seeded
    generator: (wall seconds, CPU seconds)."""
    from lstm_pipeline.serve.batcher import Engine, Group

    left = [64]

    def emit(group, events):
        left[0] -= sum(e.finish_reason is not None for e in events)
        if left[0] == 0:
            eng.stop()  # the loop below returns after this step

    eng = Engine(model, tokenizer, max_batch=64)
    dec = Nucleus(top_p=0.9)
    t0, c0 = time.perf_counter(), time.process_time()
    for i, p in enumerate(prompts(64)):
        eng.submit(Group([p], dec, tokens, emit=emit, seed=i))
    eng._loop()
    return time.perf_counter() - t0, time.process_time() - c0


async def run_serve(http, st, url: str, pid: int, tokens: int) -> dict:
    """64 concurrent streaming clients, ``tokens`` each, from the first request sent to the last
    ``[DONE]``; tokens counted from each stream's ``usage``."""
    nucleus = {"temperature": 1.0, "top_p": 0.9}
    rows = prompts(64)
    await wait_idle(http, url)
    kids = children(pid)
    c0 = (cpu_seconds(pid), sum(cpu_seconds(k) for k in kids), time.process_time())
    firsts: list[float] = []
    t0 = time.perf_counter()
    got = await asyncio.gather(*[st(http, url, {"prompt": rows[i], "max_tokens": tokens, "seed": i, **nucleus},
                                        first=firsts) for i in range(64)])
    dt = time.perf_counter() - t0
    c1 = (cpu_seconds(pid), sum(cpu_seconds(k) for k in kids), time.process_time())
    n = sum(t for t, _ in got)
    assert n == 64 * tokens, n
    web, engine, clients = (b - a for a, b in zip(c0, c1))
    return {"wall": dt, "tokens": n, "events": sum(e for _, e in got), "cpu_web": web, "cpu_engine": engine,
            "cpu_clients": clients, "last_first_token": max(firsts)}


async def run_all(url: str, pid: int, model, tokenizer, args) -> dict:
    nucleus = {"temperature": 1.0, "top_p": 0.9}
    rows = prompts(64)
    out = {"rounds": []}
    if args.client == "httpx":
        st, http = stream, httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=200,
                                                                            max_keepalive_connections=200))
    else:
        import aiohttp

        st, http = stream_lean, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600),
                                                      connector=aiohttp.TCPConnector(limit=200))
    async with http:
        # warm up all three
        run_generate(model, 5)
        run_engine(model, tokenizer, 5)
        await asyncio.gather(*[st(http, url, {"prompt": rows[i], "max_tokens": 4, **nucleus}) for i in range(64)])
        # 1. throughput, in turns: generate, the engine alone, the server (load drift hits all three)
        for _ in range(args.repeats):
            g = run_generate(model, args.tokens)
            e = run_engine(model, tokenizer, args.tokens)
            s = await run_serve(http, st, url, pid, args.tokens)
            out["rounds"].append({"generate": g, "engine": e, "serve": s, "load": os.getloadavg()[0]})
        # 2. time to first token while 63 others stream
        await wait_idle(http, url)
        background = [asyncio.create_task(st(http, url, {"prompt": rows[i], "max_tokens": 100000 // 64 * 64,
                                                             **nucleus})) for i in range(63)]
        while (await health(http, url))["active_rows"] < 63:
            await asyncio.sleep(0.01)
        firsts: list[float] = []
        for k in range(20):
            await st(http, url, {"prompt": rows[63], "max_tokens": 1, **nucleus}, first=firsts)
            await asyncio.sleep(0.02)
        h0 = await health(http, url)
        out["ttft_p50_ms"] = 1e3 * statistics.median(firsts)
        out["ttft_p90_ms"] = 1e3 * sorted(firsts)[int(0.9 * len(firsts)) - 1]
        out["ttft_background_rows"] = h0["active_rows"]
        # 4. disconnect while the 63 stream: time from the close to the row leaving, in steps
        before = await health(http, url)
        base_rows = before["active_rows"]
        await st(http, url, {"prompt": rows[63], "max_tokens": 100000, **nucleus}, stop_after=2)
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
            await st(http, url, {"prompt": rows[i % 64], "max_tokens": 8, **nucleus})
            if i in (100, args.sequential):
                rss[i] = rss_mib(pid)
        out["rss_mib"] = rss
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=400, help="tokens per client (and per generate row) in the throughput runs")
    ap.add_argument("--repeats", type=int, default=3, help="throughput rounds (generate, engine, server in turns)")
    ap.add_argument("--sequential", type=int, default=1000, help="sequential requests for the memory figure")
    ap.add_argument("--stream-interval-ms", type=float, default=None,
                    help="the server's stream_interval_ms (default: the server's default)")
    ap.add_argument("--client", choices=["lean", "httpx"], default="lean",
                    help="the bench's clients: lean (aiohttp, reads every byte, decodes only the final usage; "
                         "default) or httpx (decodes every event as JSON)")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                    help="an environment variable for the server's processes only (repeatable), e.g. "
                         "LSTM_PIPELINE_SERVE_ENGINE_THREAD=main or GOMP_SPINCOUNT=10000")
    ap.add_argument("--quick", action="store_true", help="2 rounds, 200 sequential requests (still 400 tokens per client)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.sequential = 2, 200
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        mdir = model_dir(Path(tmp))
        from lstm_pipeline.artifacts.model_dir import load_pretrained

        model, tokenizer, _ = load_pretrained(mdir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "serve.log", "w+")
        proc = subprocess.Popen([sys.executable, "-m", "lstm_pipeline.cli", "serve", f"run={mdir}", f"port={port}",
                                 "log_level=warning", "max_tokens=100000", "max_streams=300", "max_batch=64",
                                 *([f"stream_interval_ms={args.stream_interval_ms}"] if args.stream_interval_ms is not None else [])],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **dict(kv.split("=", 1) for kv in args.server_env)})
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
            res = asyncio.run(run_all(url, proc.pid, model, tokenizer, args))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    n = 64 * args.tokens
    rounds = res["rounds"]
    gen = min(r["generate"][0] for r in rounds)
    eng = min(r["engine"][0] for r in rounds)
    best = min(rounds, key=lambda r: r["serve"]["wall"])
    srv = best["serve"]
    load = os.getloadavg()
    loads = ", ".join(f"{r['load']:.2f}" for r in rounds)
    per_round = ", ".join(f"{r['generate'][0] / r['serve']['wall']:.2f}x" for r in rounds)
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
          f"(at the end of each round: {loads})")
    print(f"torch {torch.__version__}, {threads} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"model: {LAYERS}x{HIDDEN} LSTM, vocab {VOCAB}; 64 rows x {args.tokens} tokens; "
          f"best of {len(rounds)} rounds, each round generate, engine, server in turns; server "
          f"stream_interval_ms={'default' if args.stream_interval_ms is None else args.stream_interval_ms}"
          f"{'; server env ' + ' '.join(args.server_env) if args.server_env else ''}")
    print(f"generate, nucleus top_p=0.9, batch 64:        {n / gen:8.0f} tokens/s")
    print(f"the batching engine alone (no HTTP), 64 rows: {n / eng:8.0f} tokens/s  = {gen / eng:.2f}x generate")
    print(f"serve, 64 concurrent streaming clients ({args.client}): {n / srv['wall']:8.0f} tokens/s  = {gen / srv['wall']:.2f}x "
          f"generate (goal >= 0.8x); from the first request sent to the last [DONE], tokens from usage")
    print(f"  per round, serve / generate: {per_round}")
    print(f"  the 64th client's first token came {1e3 * srv['last_first_token']:.0f} ms after the requests were sent; "
          f"{srv['tokens'] / srv['events']:.2f} tokens per server-sent event")
    gcpu = min(r["generate"][1] for r in rounds)
    print(f"CPU seconds for the {n} tokens: generate {gcpu:.2f}; engine alone {min(r['engine'][1] for r in rounds):.2f}; "
          f"serve: engine process {srv['cpu_engine']:.2f} + web process {srv['cpu_web']:.2f} + clients "
          f"{srv['cpu_clients']:.2f} (in {srv['wall']:.2f} s)")
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
