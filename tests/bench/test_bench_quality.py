"""bench/bench_quality.py runs both runners for a (here tiny) budget, scores them on the same
held-out text and ends with one line per runner: its name first, its loss in nats last."""
import re
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def test_bench_quality_reports_both_runners_on_the_same_text():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_quality.py"), "--budget", "2",
         "--overrides", "model.hidden_size=16 model.embedding_dim=8 batching.eval_batch_size=4"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    bare, pipeline = lines[-2], lines[-1]
    assert bare.startswith("bare ") and pipeline.startswith("pipeline ")
    losses = [float(re.search(r"(\d+\.\d+)$", line).group(1)) for line in (bare, pipeline)]
    assert all(0.5 < x < 4.5 for x in losses), losses  # nats per character; ln(65) = 4.17 is a uniform guess
    assert re.search(r"pipeline - bare: [+-]\d+\.\d{4} nats", proc.stdout)
    # both scored on the same tokens: the validation and test splits of the default run's data
    tokens = re.findall(r"held-out (\d+\.\d+) nats", proc.stdout)
    assert len(tokens) == 2
