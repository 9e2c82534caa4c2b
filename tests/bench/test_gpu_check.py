"""bench/gpu_check.sh and LSTM_PIPELINE_TEST_DEVICE on a machine without CUDA: one clear line, clean exit."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from helpers import ROOT

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run its checks")


@no_cuda
def test_gpu_check_exits_cleanly_without_cuda():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "---" not in proc.stdout  # no step was started


def test_gpu_check_without_torch_says_so():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": "/nonexistent/python"})
    assert proc.returncode == 1
    assert proc.stdout.startswith("gpu_check: cannot import torch with /nonexistent/python")


@no_cuda
def test_test_device_cuda_without_cuda_is_one_usage_line(tmp_path):
    """LSTM_PIPELINE_TEST_DEVICE=cuda on a machine without CUDA stops pytest at once, naming the variable."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "unit" / "test_presets_reference.py"), "-k", "unknown"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "LSTM_PIPELINE_TEST_DEVICE": "cuda"})
    assert proc.returncode != 0
    assert "LSTM_PIPELINE_TEST_DEVICE=cuda but torch.cuda.is_available() is False" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_device_fixture_is_the_test_device(device):
    assert device == torch.device(os.environ.get("LSTM_PIPELINE_TEST_DEVICE", "cpu"))
    assert torch.empty(1).device.type == device.type  # the default device follows it
