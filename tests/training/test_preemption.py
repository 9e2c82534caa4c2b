"""Preemption: SIGTERM and SIGINT sent to a real ``lstm-pipeline train`` mid-run save a resumable checkpoint
at the current step, print one line with the resume command, exit 143 / 130; running that command ends
bit-identical to the uninterrupted run."""
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import run_cli

from lstm_pipeline.data.sources import bundled_corpus

STEPS = 80
ARGS = ["data=text", "model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=4", "batching.bptt=16",
        "batching.eval_batch_size=2", "trainer.enable_progress_bar=false", "sample.max_new_tokens=0",
        "trainer.val_check_interval=7", "trainer.check_val_every_n_epoch=null", "scheduler=none",
        "model.dropout=0.2", f"trainer.max_steps={STEPS}"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text(bundled_corpus().read_text()[:3000])  # 46 batches an epoch: stops fall anywhere
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus):
    work = tmp_path_factory.mktemp("full")
    run_cli("train", f"data.path={corpus}", *ARGS, f"hydra.run.dir={work / 'run'}", cwd=work)
    return torch.load(work / "run" / "checkpoints" / "last.ckpt", weights_only=True)


def _start_and_signal(cmd, cwd, run_dir, signum):
    """Start ``cmd``, wait for its first checkpoint (training has begun), send ``signum``; (rc, stdout, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=240)
    return proc.returncode, out, err


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_the_printed_command_resumes_exactly(signum, code, corpus, uninterrupted,
                                                                            tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lstm_pipeline.cli", "train", f"data.path={corpus}", *ARGS, f"hydra.run.dir={run_dir}"]
    rc, _, err = _start_and_signal(cmd, tmp_path, run_dir, signum)
    assert rc == code, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("lstm-pipeline train: ")]
    assert len(lines) == 1, err[-3000:]
    assert f"{signal.Signals(signum).name} at step" in lines[0] and "resume with: " in lines[0]
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < stopped["global_step"] < STEPS
    assert f"at step {stopped['global_step']}:" in lines[0]  # the checkpoint holds the step it stopped at
    assert not (run_dir / "model").exists()  # stopped: nothing exported
    resume = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert resume[:3] == ["lstm-pipeline", "train", f"ckpt_path={run_dir}"]
    run_cli(*resume[1:], cwd=tmp_path)
    got = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == STEPS
    for k, v in uninterrupted["state_dict"].items():
        assert torch.equal(got["state_dict"][k], v), k
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_slurm_requeued_job_resumes_its_run_directory(tmp_path, monkeypatch):
    """A requeued SLURM job (SLURM_RESTART_COUNT > 0) reruns the same command: its hydra.run.dir holds the
    checkpoint, and the run goes on from it instead of refusing a used directory."""
    from lstm_pipeline.training.rundir import RunDirError, claim_run_dir

    run_dir = tmp_path / "slurm-1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    args = [f"hydra.run.dir={run_dir}"]
    with pytest.raises(RunDirError):
        claim_run_dir(args)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert claim_run_dir(args) == [*args, f"ckpt_path={run_dir}", "hydra.output_subdir=null"]


# -- in this process: a signal at a chosen step, NT-ASGD's averages and a validating step included ------------
REG = ["optim=ntasgd", "optim.lr=2.0", "optim.nonmono=0", "model.dropout=0.2", "model.weight_drop=0.3",
       "trainer.val_check_interval=3", "trainer.check_val_every_n_epoch=null", "scheduler=none",
       "model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=4", "batching.bptt=16",
       "batching.eval_batch_size=2", "trainer.enable_progress_bar=false", "sample.max_new_tokens=0"]


class _SignalAt:
    """Sends ``signum`` to this process while training step ``step`` runs."""

    def __init__(self, step, signum):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("step", [4, 5])  # 5: the 6th step, which validates (every 3)
def test_signal_in_process_stops_after_the_step_and_resumes_exactly(step, tmp_path, monkeypatch):
    import lightning as L
    from test_training_resume import compose_train

    from lstm_pipeline.training import train as train_mod
    from lstm_pipeline.training.preemption import Preempted

    corpus = tmp_path / "small.txt"
    corpus.write_text(bundled_corpus().read_text()[:400])

    def go(name, *extra):
        return train_mod.train(compose_train(["data=text", f"data.path={corpus}", *REG, f"run_dir={tmp_path / name}",
                                              "trainer.max_steps=10", *extra]))

    go("full")
    original = train_mod.run_callbacks
    signal_cb = type("SignalAt", (_SignalAt, L.Callback), {})(step, signal.SIGTERM)
    monkeypatch.setattr(train_mod, "run_callbacks", lambda cfg: [*original(cfg), signal_cb])
    with pytest.raises(Preempted) as stop:
        go("cut")
    monkeypatch.setattr(train_mod, "run_callbacks", original)
    assert stop.value.exit_code == 143 and stop.value.step == step + 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back
    saved = torch.load(stop.value.checkpoint, weights_only=True)
    assert saved["global_step"] == step + 1
    go("cut", f"ckpt_path={tmp_path / 'cut'}")
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    for k, v in a["state_dict"].items():
        assert torch.equal(b["state_dict"][k], v), k
    for k, v in a["lstm_pipeline"]["averaged_weights"].items():
        assert torch.equal(b["lstm_pipeline"]["averaged_weights"][k], v), k
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("best-*")) == \
        sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("best-*"))


def test_sigterm_before_the_first_step_exits_143_not_0(tmp_path, monkeypatch):
    """Before training starts, Lightning's own SIGTERM handler stops the run with SystemExit(0): it becomes
    Preempted (exit 143 from the command), with no checkpoint, and the run directory is left as it was."""
    import lightning as L
    from test_training_resume import compose_train

    from lstm_pipeline.training import train as train_mod
    from lstm_pipeline.training.preemption import Preempted

    class AtSanityCheck(L.Callback):
        def on_sanity_check_start(self, trainer, pl_module):
            os.kill(os.getpid(), signal.SIGTERM)

    corpus = tmp_path / "small.txt"
    corpus.write_text(bundled_corpus().read_text()[:400])
    original = train_mod.run_callbacks
    monkeypatch.setattr(train_mod, "run_callbacks", lambda cfg: [*original(cfg), AtSanityCheck()])
    with pytest.raises(Preempted) as stop:
        train_mod.train(compose_train(["data=text", f"data.path={corpus}", *REG, f"run_dir={tmp_path / 'run'}",
                                       "trainer.max_steps=4", "trainer.num_sanity_val_steps=1"]))
    assert stop.value.exit_code == 143 and stop.value.checkpoint is None
    assert not (tmp_path / "run" / "checkpoints").exists()
