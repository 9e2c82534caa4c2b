import os
from pathlib import Path

import pytest

from helpers import TINY, run_cli, run_cli_in_process, stale_entry_points
from lstm_pipeline.data.sources import bundled_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    path.write_text(bundled_corpus().read_text()[:20000])
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_corpus) -> Path:
    """One tiny training run shared by the tests that only read its outputs."""
    work = tmp_path_factory.mktemp("work")
    run_dir = work / "run"
    run_cli("train", "data=text", f"data.path={tiny_corpus}", *TINY, f"hydra.run.dir={run_dir}", cwd=work)
    return run_dir


@pytest.fixture
def cli_in_process(capfd):
    """``cli_in_process(*args, cwd=, check=, env=, input=)``: ``run_cli``'s answer (returncode, stdout,
    stderr) from ``lstm_pipeline.cli.main`` run in this process (helpers.run_cli_in_process): for tests
    of what a command does and says, without a new interpreter's seconds of imports."""
    return lambda *args, **kw: run_cli_in_process(capfd, *args, **kw)


# -- the device the in-process tests build their tensors and models on ---------------------------------
#: LSTM_PIPELINE_TEST_DEVICE=cuda (or cuda:N) makes torch's default device that one for the whole test
#: process (torch.set_default_device), so the model, decoding and export tests run there unchanged;
#: tests that need a device explicitly take the ``device`` fixture. CLI subprocesses are not affected.
TEST_DEVICE = os.environ.get("LSTM_PIPELINE_TEST_DEVICE", "cpu")


def pytest_configure(config):
    stale = stale_entry_points()
    if stale:  # the registries would not see this checkout's components: every test of them would mislead
        raise pytest.UsageError(f"the installed lstm-pipeline lacks entry points pyproject.toml declares "
                                f"({'; '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}): run "
                                f"`python -m pip install -e .` again to refresh them")
    if TEST_DEVICE == "cpu":
        return
    import torch

    try:
        dev = torch.device(TEST_DEVICE)
    except RuntimeError:
        raise pytest.UsageError(f"LSTM_PIPELINE_TEST_DEVICE={TEST_DEVICE} is not a device: use cpu, cuda or cuda:<index>")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"LSTM_PIPELINE_TEST_DEVICE={TEST_DEVICE} but torch.cuda.is_available() is False "
                                f"(torch {torch.__version__}): unset it to test on the CPU")
    torch.set_default_device(dev)


def pytest_report_header(config):
    return f"lstm_pipeline test device: {TEST_DEVICE} (LSTM_PIPELINE_TEST_DEVICE)"


@pytest.fixture(scope="session")
def device():
    """The torch.device the tests run on (LSTM_PIPELINE_TEST_DEVICE, default cpu)."""
    import torch

    return torch.device(TEST_DEVICE)
