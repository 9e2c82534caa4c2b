"""The benches that read the shared data sets run shrunk (seconds each), so a refactor that breaks one
fails the suite: each ends with its figures' lines. They need WikiText-2 and Tiny Shakespeare from
$LSTM_PIPELINE_SHARED_DATA or ../shared/data, and skip saying where they looked."""
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, SHARED_DATA, SHARED_DATA_ENV

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (SHARED_DATA / "wikitext-2" / "valid.txt").is_file(),
    reason=f"the benches read WikiText-2 from {SHARED_DATA} (set {SHARED_DATA_ENV})")]


def bench(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, SHARED_DATA_ENV: str(SHARED_DATA)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_bench_train_compares_the_bare_loop_and_the_pipeline():
    out = bench("bench_train.py", "--levels", "char", "--steps", "2", "--warmup", "1", "--rounds", "1")
    assert "char" in out and "load drift check" in out


def test_bench_data_times_encoding_and_the_loader():
    out = bench("bench_data.py", "--repeats", "1", "--steps", "2")
    assert "speed-up cold/warm" in out
    assert len(re.findall(r"ratio \d+\.\d+% \(goal < 5%\)", out)) == 5  # every batching mode of the loader


def test_bench_export_scores_every_runtime():
    out = bench("bench_export.py", "--steps", "5", "--train-seconds", "1", "--test-tokens", "500")
    assert "onnxruntime-int8" in out


def test_bench_presets_compares_ours_with_the_reference():
    out = bench("bench_presets.py", "--presets", "char_rnn", "awd_lstm_ptb", "--seeds", "1", "--epochs", "1",
                "--vocab", "200", "--word-train", "2000", "--word-score", "1000", "--char-train", "3000",
                "--wlm-width", "16", "--awd-emb", "8", "--awd-hidden", "16")
    assert re.search(r"char_rnn ours \d+\.\d+ reference \d+\.\d+ ratio", out)
    assert re.search(r"awd_lstm_ptb ours \d+\.\d+ reference \d+\.\d+ ratio", out)
