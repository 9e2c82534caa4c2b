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


# -- the core install: no extra ---------------------------------------------------------------------
OPTIONAL = ("fastapi", "uvicorn", "onnx", "onnxruntime", "matplotlib", "transformers", "selenium", "optuna", "xlstm")


@pytest.mark.slow
def test_core_install_alone_trains_generates_and_names_the_extras(tmp_path):
    """``pip install lstm-pipeline`` (no extra) in a fresh venv: torch first (the CPU build on this
    disk), then the project; it trains, generates, and a command that needs an extra says which."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py, cli = str(env_dir / "bin" / "python"), str(env_dir / "bin" / "lstm-pipeline")
    env = {**os.environ, "PYTHONPATH": "", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for args in (["torch==2.13.0"], [str(ROOT)]):
        r = subprocess.run([py, "-m", "pip", "install", "-q", *args], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
    absent = subprocess.run([py, "-c", "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (OPTIONAL,)],
                            capture_output=True, text=True, env=env)
    assert absent.stdout.strip() == "[]", absent.stdout  # none of the extras came with the core
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([cli, "train", *TINY, "trainer.max_steps=4", "trainer.val_check_interval=2", "hydra.run.dir=run"],
                       cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work / "run" / "model" / "model.safetensors").is_file()
    g = subprocess.run([cli, "generate", "run=run", "max_new_tokens=10", "seed=0"], cwd=work, capture_output=True,
                       text=True, env=env)
    assert g.returncode == 0 and g.stdout.strip(), g.stderr[-2000:]
    e = subprocess.run([cli, "evaluate", "run=run", "splits=[validation]"], cwd=work, capture_output=True, text=True, env=env)
    assert e.returncode == 0 and (work / "run" / "eval.json").is_file(), e.stderr[-2000:]
    for args, extra in ((["plot", "run=run"], "plots"), (["export", "run=run", "format=onnx"], "onnx"),
                        (["serve", "run=run"], "serve")):
        r = subprocess.run([cli, *args], cwd=work, capture_output=True, text=True, env=env, timeout=300)
        errors = [line for line in r.stderr.splitlines() if " error: " in line]
        assert r.returncode != 0 and len(errors) == 1, r.stderr[-2000:]
        assert errors[0].endswith(f"pip install 'lstm-pipeline[{extra}]'"), r.stderr[-2000:]
        assert "Traceback" not in r.stderr, r.stderr[-2000:]


def test_requires_names_the_extra_in_one_line():
    from lstm_pipeline.extras import MissingExtraError, requires

    assert requires("plots", "json").dumps({}) == "{}"
    with pytest.raises(MissingExtraError) as info:
        requires("plots", "no_such_module_here", "lstm-pipeline plot")
    assert isinstance(info.value, ImportError) and isinstance(info.value, LookupError)  # the CLI prints one line
    assert str(info.value) == "lstm-pipeline plot needs the 'no_such_module_here' package: pip install 'lstm-pipeline[plots]'"
