"""Loading or resuming anything never runs code and never touches paths the user did not name:
crafted checkpoints, crafted recorded overrides and a model's recorded data block (issue 12)."""
import json
import os
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from lstm_pipeline.training.safety import (UnsafeCheckpointError, UnsafeConfigError, check_recorded_overrides,
                                           check_targets, load_checkpoint, target_allowed)


class _Evil:
    """Unpickling this runs a shell command (what a crafted .ckpt does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted_ckpt(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.0", "x": _Evil(marker)}, path)
    return path, marker


def test_crafted_checkpoint_is_refused_and_never_run(tmp_path):
    path, marker = _crafted_ckpt(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load .*evil\.ckpt.*system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_train_with_a_crafted_checkpoint_is_one_clear_line(tmp_path, tiny_corpus, cli_in_process):
    path, marker = _crafted_ckpt(tmp_path)
    proc = cli_in_process("train", "data=text", f"data.path={tiny_corpus}", f"ckpt_path={path}",
                          f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "error: refused to load" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()


def test_a_project_checkpoint_loads_weights_only(tiny_run):
    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] > 0 and load_checkpoint(tiny_run / "checkpoints" / "last.ckpt")["state_dict"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("target,ok", [
    ("torch.optim.SGD", True), ("torch.optim.lr_scheduler.CosineAnnealingLR", True),
    ("torch.optim.lr_scheduler.ReduceLROnPlateau", True), ("lightning.pytorch.callbacks.EarlyStopping", True),
    ("lightning.pytorch.loggers.CSVLogger", True), ("lstm_pipeline.training.ntasgd.NTASGD", True),
    ("lstm_pipeline.training.schedules.WarmupCosine", True), ("lstm_pipeline.training.loggers.wandb", True),
    ("lstm_pipeline.data.vbptt.VariableBPTTScaler", True),  # registered callback
    ("shutil.copyfile", False), ("torch.load", False), ("os.system", False), ("builtins.exec", False),
    ("torch.optim.lr_scheduler.torch.load", False),  # a module reached through an allowed one
    ("torch.optim.Optimizer.load_state_dict", False), ("lightning.pytorch.callbacks.os", False),
    ("lstm_pipeline.training.loggers.importlib", False), ("torch.optim._functional", False),
])
def test_target_allow_list(target, ok):
    assert target_allowed(target) is ok


def test_every_shipped_config_target_is_allowed():
    from importlib import resources

    root = resources.files("lstm_pipeline.conf")
    seen = 0
    for path in root.rglob("*.yaml") if hasattr(root, "rglob") else __import__("pathlib").Path(str(root)).rglob("*.yaml"):
        node = OmegaConf.to_container(OmegaConf.load(path))
        check_targets(node, str(path))
        seen += "_target_" in path.read_text()
    assert seen >= 8


def test_composed_config_with_a_foreign_target_is_refused_before_anything_runs(tmp_path, tiny_corpus):
    from test_training_resume import compose_train

    from lstm_pipeline.config.checks import check

    dst = tmp_path / "copied"
    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", f"run_dir={tmp_path / 'run'}",
                         "+callbacks.x._target_=shutil.copyfile", f"+callbacks.x.src={tiny_corpus}",
                         f"+callbacks.x.dst={dst}"])
    with pytest.raises(UnsafeConfigError, match=r"callbacks\.x\._target_=shutil\.copyfile .* is refused"):
        check("train", cfg)  # the check pass the CLI and api.train run before training
    assert not dst.exists() and not (tmp_path / "run").exists()
    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", f"run_dir={tmp_path / 'run'}",
                         "optim._target_=torch.load", "+optim.f=/etc/hostname"])
    with pytest.raises(UnsafeConfigError, match=r"optim\._target_=torch\.load"):
        check("train", cfg)


@pytest.mark.parametrize("line,names", [
    ("+callbacks.x._target_=shutil.copyfile", "shutil.copyfile"),
    ("+callbacks.x={_target_: torch.load, f: /etc/hostname}", "torch.load"),
    ("+hydra.callbacks.x._target_=shutil.copyfile", "reconfigures Hydra"),
    ("hydra.job_logging.handlers.file.filename=/tmp/elsewhere.log", "reconfigures Hydra"),
    ("logger.save_dir=/tmp/elsewhere", "a place outside the run directory to write to"),
])
def test_resume_refuses_crafted_recorded_overrides(tiny_run, tmp_path, line, names, cli_in_process):
    run = tmp_path / "shared"
    shutil.copytree(tiny_run, run)
    recorded = run / ".hydra" / "overrides.yaml"
    overrides = OmegaConf.to_container(OmegaConf.load(recorded))
    before = (run / ".hydra").glob("*")
    before = {p.name: p.read_bytes() for p in before}
    dst = tmp_path / "written-outside"
    OmegaConf.save(OmegaConf.create(overrides + [line, f"+callbacks.x.src={recorded}", f"+callbacks.x.dst={dst}"]),
                   recorded)
    before[recorded.name] = recorded.read_bytes()
    proc = cli_in_process("train", f"ckpt_path={run}", "trainer.max_steps=14", cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "error:" in proc.stderr and names in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not dst.exists()
    assert {p.name: p.read_bytes() for p in (run / ".hydra").glob("*")} == before  # nothing rewritten


def test_trusted_targets_from_the_environment(monkeypatch):
    assert not target_allowed("my_pkg.callbacks.Dump")
    monkeypatch.setenv("LSTM_PIPELINE_ALLOW_TARGETS", "other.X, my_pkg.callbacks.*")
    assert target_allowed("my_pkg.callbacks.Dump") and target_allowed("other.X") and not target_allowed("other.Y")


def test_recorded_overrides_check_accepts_a_plain_run():
    check_recorded_overrides(["data=text", "model.hidden_size=32", "optim=sgd",
                              "scheduler._target_=torch.optim.lr_scheduler.StepLR", "hydra.verbose=true"], "x")
    with pytest.raises(UnsafeConfigError):
        check_recorded_overrides(["+logger._target_=os.system"], "x")
    with pytest.raises(UnsafeConfigError, match="data.cache_dir=/elsewhere"):
        check_recorded_overrides(["data.cache_dir=/elsewhere"], "x")
    check_recorded_overrides(["data.cache_dir=null"], "x")


# -- evaluate and a model's recorded data --------------------------------------------------------------
def test_evaluate_does_not_follow_a_crafted_data_block(tiny_run, tmp_path, cli_in_process):
    run = tmp_path / "downloaded"
    shutil.copytree(tiny_run, run)
    cfg_path = run / "model" / "config.json"
    config = json.loads(cfg_path.read_text())
    cache = tmp_path / "written-here"
    config["data"] = {"name": "hub", "path": "text", "data_files": "/etc/hostname", "cache_dir": str(cache)}
    cfg_path.write_text(json.dumps(config))
    proc = cli_in_process("evaluate", f"run={run}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "is not used" in proc.stderr and "data=text data.path=" in proc.stderr, proc.stderr
    assert not cache.exists()
    # a bare model directory (as downloaded from the Hub): its recorded data is never followed
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run / "model", bare)
    proc = cli_in_process("evaluate", f"run={bare}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "not the model/ folder of a training run" in proc.stderr, proc.stderr


def test_evaluate_uses_the_runs_own_data_and_named_data(tiny_run, tmp_path, tiny_corpus, cli_in_process):
    report = tmp_path / "r.json"
    cli_in_process("evaluate", f"run={tiny_run}", f"report={report}", "splits=[validation]", cwd=tmp_path)
    assert json.loads(report.read_text())["validation"]["loss"] > 0
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run / "model", bare)
    cli_in_process("evaluate", f"run={bare}", "data=text", f"data.path={tiny_corpus}", f"report={report}",
                   "splits=[validation]", cwd=tmp_path)
    assert json.loads(report.read_text())["validation"]["loss"] > 0
