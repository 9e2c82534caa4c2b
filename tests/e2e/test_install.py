"""The CLI works after a real, non-editable install (a wheel), run from a directory that is not the
repository: configs and the default corpus ship inside the package."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from helpers import ROOT, TINY


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    # the installed wheel must be what runs: no checkout (PYTHONPATH=src) or source metadata (conftest) on the path
    clean = {**os.environ, "PYTHONPATH": ""}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("lstm_pipeline-*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, env=clean).stdout.strip()
    # the dependencies (torch, lightning, ...) come from the test environment; a plain path entry
    # does not run that environment's .pth files, so its editable lstm-pipeline stays invisible
    deps = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    Path(site, "test_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True, env=clean)
    return env_dir, tmp


def test_wheel_contains_configs_and_corpus(wheel_env):
    env_dir, _ = wheel_env
    out = subprocess.run([env_dir / "bin" / "python", "-c",
                          "import lstm_pipeline, lstm_pipeline.conf as c, pathlib;"
                          "from lstm_pipeline.data.sources import bundled_corpus;"
                          "print(lstm_pipeline.__file__); print(sorted(p.name for p in pathlib.Path(c.__file__).parent.glob('*.yaml')));"
                          "print(bundled_corpus().stat().st_size)"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    out = out.stdout.splitlines()
    assert "site-packages" in out[0] and str(ROOT) not in out[0]
    assert {"train.yaml", "generate.yaml", "evaluate.yaml"} <= set(eval(out[1]))
    assert int(out[2]) == 1115394


def test_installed_cli_trains_and_generates_from_another_directory(wheel_env):
    env_dir, tmp = wheel_env
    cli = str(env_dir / "bin" / "lstm-pipeline")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    help_out = subprocess.run([cli, "train", "--help"], cwd=elsewhere, capture_output=True, text=True, env=env)
    cells_line = next(line for line in help_out.stdout.splitlines() if line.startswith("model/cell:"))
    assert help_out.returncode == 0 and {"gru", "lstm", "lstm_cell"} <= set(cells_line.split(":")[1].replace(",", " ").split())
    # the default corpus (bundled) with a tiny model: the run directory lands under the cwd
    r = subprocess.run([cli, "train", *TINY, "trainer.max_steps=4", "trainer.val_check_interval=2",
                        "hydra.run.dir=run"], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (elsewhere / "run" / "model" / "model.safetensors").is_file()
    g = subprocess.run([cli, "generate", "run=run", "prompt=ROMEO:", "max_new_tokens=10", "seed=0"],
                       cwd=elsewhere, capture_output=True, text=True, env=env)
    assert g.returncode == 0 and g.stdout.startswith("ROMEO:"), g.stderr[-2000:]
