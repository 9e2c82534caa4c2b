from pathlib import Path

import pytest

from helpers import TINY, run_cli, source_metadata_shim
from lstm_pipeline.data.sources import bundled_corpus

# entry points this checkout declares but the installed metadata lacks (until a reinstall): see helpers
_SHIM = source_metadata_shim()
if _SHIM is not None:
    import os
    import sys

    sys.path.insert(0, str(_SHIM))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SHIM), os.environ.get("PYTHONPATH")) if p)


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
