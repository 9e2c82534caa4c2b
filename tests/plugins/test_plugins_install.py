"""The example plugins, installed for real with pip into a throwaway environment: train with
model/cell=mogrifier, see them in `plugins --check` and `train --help`, then uninstall and get
the registry's "unknown cell, available: ..." error."""
import json
from pathlib import Path

import pytest

from helpers import TINY
from lstm_pipeline.registry import CELLS
from lstm_pipeline.testing import ThrowawayEnv

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@pytest.mark.slow
def test_install_train_uninstall(tmp_path, tiny_corpus):
    if "mogrifier" in CELLS:
        pytest.skip("lstm-pipeline-mogrifier is installed in the running environment already (the second pass of "
                    ".ci/run); this test needs an environment without it")
    env = ThrowawayEnv(tmp_path / "venv")
    env.pip_install(PLUGINS / "lstm-pipeline-mogrifier", PLUGINS / "lstm-pipeline-extras")

    check = env.run("-m", "lstm_pipeline.cli", "plugins", "--check").stdout
    assert "mogrifier              lstm-pipeline-mogrifier" in check
    assert "mirostat               lstm-pipeline-extras" in check and "FAILED" not in check
    help_text = env.run("-m", "lstm_pipeline.cli", "train", "--help").stdout
    cells_line = next(line for line in help_text.replace("\t", "").splitlines() if line.startswith("model/cell:"))
    assert {"gru", "lstm", "mogrifier"} <= set(cells_line.split(":")[1].replace(",", " ").split())

    run_dir = tmp_path / "run"
    env.run("-m", "lstm_pipeline.cli", "train", "model/cell=mogrifier", "model.cell.rounds=3", "data=text",
            f"data.path={tiny_corpus}", *[o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check"))],
            "trainer.max_steps=4", "trainer.val_check_interval=4", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["model"]["cell"] == {"name": "mogrifier", "rounds": 3, "rank": 0}
    # the run records the distribution that provided each component
    components = json.loads((run_dir / "components.json").read_text())
    assert components["model.cell"] == {"group": "lstm_pipeline.cells", "name": "mogrifier",
                                        "distribution": "lstm-pipeline-mogrifier", "version": "0.1.0"}
    assert components["data"]["distribution"] == "lstm-pipeline"
    gen = env.run("-m", "lstm_pipeline.cli", "generate", f"run={run_dir}", "decoding=mirostat", "decoding.tau=3",
                  "prompt=ROMEO:", "max_new_tokens=10", "seed=1", cwd=tmp_path).stdout
    assert gen.startswith("ROMEO:")

    env.pip_uninstall("lstm-pipeline-mogrifier")
    proc = env.run("-m", "lstm_pipeline.cli", "train", "model/cell=mogrifier", "data=text", f"data.path={tiny_corpus}",
                   *TINY, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "Unknown cell 'mogrifier'. Available cells: " in proc.stderr and ", lstm, " in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # the run trained with it says which distribution to install, when generating and when resuming
    for args in (["generate", f"run={run_dir}", "max_new_tokens=5"], ["train", f"ckpt_path={run_dir}"]):
        proc = env.run("-m", "lstm_pipeline.cli", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 1 and "cell 'mogrifier'" in proc.stderr, proc.stderr
        assert "pip install 'lstm-pipeline-mogrifier==0.1.0'" in proc.stderr, proc.stderr
        assert "Did you mean" not in proc.stderr and "Could not find" not in proc.stderr
        assert "Traceback" not in proc.stderr
