"""bench/bench_generate.py runs shrunk (no shared data needed) and prints its int8 row."""
import re
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def test_bench_generate_prints_the_int8_row():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_generate.py"), "--quick", "--tokens", "10",
                           "--repeats", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert re.search(r"int8 vs float: \d+\.\d+x the eager step speed", proc.stdout)
