"""One writer per run directory (issue 12): a directory of its own for every run, a lock while a run
writes, no training into another run's directory, a failed start or resume leaves the directory as
it was, resume from the newest complete checkpoint, stale temporary files cleaned, and a damaged
encoded-data cache entry rebuilt with a warning naming it."""
import logging
import os
import shutil
from datetime import datetime

import numpy as np
import pytest
from omegaconf import OmegaConf

from helpers import run_cli
from lstm_pipeline.training.rundir import RunDirError, RunLock, claim_run_dir
from lstm_pipeline.training.train import resolve_checkpoint, train
from test_training_resume import compose_train


def _snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
            if p.name != ".lock"}


@pytest.fixture
def used_run(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def test_two_runs_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 1, 2, 3, 4, 5)
    first = claim_run_dir(["model.hidden_size=8"], now=now)
    second = claim_run_dir(["model.hidden_size=8"], now=now)
    assert first[-1] == "hydra.run.dir=runs/2026-01-02/03-04-05"
    assert second[-1] == "hydra.run.dir=runs/2026-01-02/03-04-05-1"
    assert (tmp_path / "runs/2026-01-02/03-04-05-1").is_dir()
    # a resume keeps its directory, and Hydra is told not to rewrite the recorded config up front
    assert claim_run_dir(["ckpt_path=x", "hydra.run.dir=x"]) == ["ckpt_path=x", "hydra.run.dir=x",
                                                                 "hydra.output_subdir=null"]
    assert claim_run_dir(["--cfg", "job"]) == ["--cfg", "job"]


def test_two_cli_runs_started_together_do_not_share_a_directory(tmp_path, tiny_corpus):
    import subprocess
    import sys

    args = [sys.executable, "-m", "lstm_pipeline.cli", "train", "data=text", f"data.path={tiny_corpus}",
            "model.hidden_size=8", "model.embedding_dim=8", "batching.batch_size=2", "batching.bptt=8",
            "batching.eval_batch_size=2", "trainer.max_steps=2", "trainer.val_check_interval=2",
            "trainer.enable_progress_bar=false", "sample.max_new_tokens=0"]
    procs = [subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    runs = sorted(p for p in (tmp_path / "runs").glob("*/*") if p.is_dir())
    assert len(runs) == 2, runs
    for run in runs:
        assert (run / "model" / "config.json").is_file() and (run / ".hydra" / "overrides.yaml").is_file()


def test_training_into_a_used_directory_without_ckpt_path_is_an_error(used_run, tiny_run, tmp_path, tiny_corpus,
                                                                      cli_in_process):
    before = _snapshot(used_run)
    proc = cli_in_process("train", "data=text", f"data.path={tiny_corpus}", f"hydra.run.dir={used_run}", cwd=tmp_path,
                          check=False)
    assert proc.returncode == 1 and "already holds a run" in proc.stderr and f"ckpt_path={used_run}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(used_run) == before
    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", f"run_dir={used_run}"])
    with pytest.raises(RunDirError, match="already holds a run"):
        train(cfg)
    assert _snapshot(used_run) == before
    # nor resuming another run's checkpoint into it
    cfg = compose_train(["data=text", f"data.path={tiny_corpus}", f"run_dir={used_run}",
                         f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}"])
    with pytest.raises(RunDirError, match="already holds another run"):
        train(cfg)
    assert _snapshot(used_run) == before


def test_a_second_writer_gets_an_error_naming_the_holder(used_run, tmp_path):
    before = _snapshot(used_run)
    with RunLock(used_run):
        proc = run_cli("train", f"ckpt_path={used_run}", "trainer.max_steps=14", cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert f"being written by another run (pid {os.getpid()}" in proc.stderr and "Traceback" not in proc.stderr
    assert _snapshot(used_run) == before
    RunLock(used_run).acquire().release()  # released: free again


def test_a_failed_resume_leaves_the_directory_as_it_was(used_run, tmp_path, cli_in_process):
    before = _snapshot(used_run)
    proc = cli_in_process("train", f"ckpt_path={used_run}", "model.hidden_size=64", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(err) == 1 and "does not match this command's model settings" in err[0], proc.stderr
    assert _snapshot(used_run) == before  # overrides.yaml, train.log, checkpoints: untouched
    # so a later plain resume still works, and records its overrides once training has started
    cli_in_process("train", f"ckpt_path={used_run}", "trainer.max_steps=14", cwd=tmp_path)
    recorded = [o.lstrip("+") for o in OmegaConf.to_container(OmegaConf.load(used_run / ".hydra" / "overrides.yaml"))]
    assert "trainer.max_steps=14" in recorded and "model.hidden_size=32" in recorded  # (trainer.X= is given as ++)
    assert not any(o.startswith("model.hidden_size=64") for o in recorded)


def test_resume_falls_back_to_the_newest_complete_checkpoint(used_run, caplog):
    ckpts = used_run / "checkpoints"
    best = next(ckpts.glob("best-*.ckpt"))
    (ckpts / "last.ckpt").unlink()
    with caplog.at_level(logging.WARNING):
        assert resolve_checkpoint(used_run) == best
    assert "last.ckpt is missing" in caplog.text and best.name in caplog.text
    (ckpts / "last.ckpt").write_bytes(best.read_bytes()[:1000])  # a damaged copy
    assert resolve_checkpoint(used_run) == best
    best.unlink()
    with pytest.raises(FileNotFoundError, match="no checkpoints/last.ckpt"):
        resolve_checkpoint(used_run)


def test_stale_temporary_files_are_removed_at_the_next_start(used_run, tiny_corpus):
    stale = [used_run / "checkpoints" / ".last.ckpt.tmp-999999", used_run / ".tokenizer.json.tmp-999999"]
    for p in stale:
        p.write_bytes(b"half")
    (used_run / ".model.tmp-abc").mkdir()
    (used_run / ".model.old-999999").mkdir()
    overrides = OmegaConf.to_container(OmegaConf.load(used_run / ".hydra" / "overrides.yaml"))
    cfg = compose_train([*overrides, f"run_dir={used_run}", f"ckpt_path={used_run}", "trainer.max_steps=12"])
    train(cfg)
    assert not any(p.exists() for p in stale) and not (used_run / ".model.tmp-abc").exists()
    assert not (used_run / ".model.old-999999").exists()


def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(tmp_path, tiny_corpus, caplog):
    from lstm_pipeline.data.pipeline import prepare_corpus

    data = {"name": "text", "path": str(tiny_corpus), "cache_dir": str(tmp_path / "cache")}
    tok = {"name": "char"}
    first = {split: np.array(ids) for split, ids in prepare_corpus(data, tok).ids.items()}  # copies, not memmaps
    encoded = tmp_path / "cache" / "lstm_pipeline" / "encoded"
    index = sorted(encoded.glob("*.json"))
    assert index and not list(encoded.glob(".*tmp*"))
    index[0].write_text('{"tokens": 12')  # a torn index
    bins = sorted(encoded.glob("*.bin"))
    bins[1].write_bytes(bins[1].read_bytes()[:10])  # a truncated id file
    with caplog.at_level(logging.WARNING):
        again = prepare_corpus(data, tok)
    assert str(index[0]) in caplog.text and "damaged" in caplog.text
    assert bins[1].name in caplog.text
    for split, ids in first.items():
        assert np.array_equal(ids, np.asarray(again.ids[split])), split
