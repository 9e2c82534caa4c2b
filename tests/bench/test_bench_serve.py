"""bench/bench_serve.py as docs/serve.md shows it, shrunk (8 tokens per client, one round, 100
sequential requests): both kinds of client, a server setting and a server-only environment
variable reach the server, and every figure is printed."""
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow

FIGURES = [r"generate, nucleus top_p=0\.9, batch 64: +\d+ tokens/s",
           r"the batching engine alone \(no HTTP\), 64 rows: +\d+ tokens/s += \d+\.\d\dx generate",
           r"time to first token, 1 client \+ 63 streaming: p50 \d+\.\d ms",
           r"server memory: \d+ MiB after 100 requests",
           r"disconnect: the row left the batch \d+\.\d ms after the client closed"]


@pytest.mark.parametrize("client, extra, header", [
    ("lean", ["--stream-interval-ms", "20", "--server-env", "GOMP_SPINCOUNT=2000"],
     "server stream_interval_ms=20.0; server env GOMP_SPINCOUNT=2000"),
    ("httpx", [], "server stream_interval_ms=default"),
])
def test_bench_serve_prints_every_figure(client, extra, header):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_serve.py"), "--tokens", "8", "--repeats", "1",
                           "--sequential", "100", "--client", client, *extra],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert header in out, out
    # the server's tokens were counted from each stream's usage: 64 clients x 8 tokens (the bench asserts it)
    assert re.search(rf"serve, 64 concurrent streaming clients \({client}\): +\d+ tokens/s += \d+\.\d\dx generate", out), out
    assert "CPU seconds for the 512 tokens" in out, out
    for figure in FIGURES:
        assert re.search(figure, out), (figure, out)
