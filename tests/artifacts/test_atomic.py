"""Whole files or none (artifacts/atomic.py): a write that fails (a full disk, ``ulimit -f``, a kill)
leaves the old file or no file under the real name, says so in one line, and leaves no temporary;
temporaries of a killed writer are removed by the next write; files get the user's umask."""
import errno
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest

from lstm_pipeline import atomic
from lstm_pipeline.atomic import StorageError, atomic_write, remove_stale_temporaries, write_text

from helpers import run_cli


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_full_disk_is_a_storage_error_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "eval.json"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(StorageError) as e:
        write_text(path, "x")
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert str(e.value).startswith(f"Could not write {path}: the disk is full") and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []
    # a Rust writer's message (safetensors) counts too
    assert isinstance(atomic.as_storage_error(RuntimeError("IoError(Os { code: 27, kind: FileTooLarge })"), path),
                      StorageError)


def test_file_size_limit_in_a_subprocess(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"old")
    code = (f"import sys; sys.path[:0] = {sys.path!r}\n"
            "from lstm_pipeline.atomic import write_bytes, StorageError\n"
            "try:\n"
            f"    write_bytes({str(path)!r}, b'x' * 100000)\n"
            "except StorageError as e:\n"
            "    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=_limit_file_size(20 * 1024), timeout=120)
    assert "the file-size limit (ulimit -f) was reached" in proc.stdout, proc.stderr
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_dir = tmp_path / f".model.tmp-{dead.pid}-abcd1234"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"partial")
    stale_file = tmp_path / f".eval.json.tmp-{dead.pid}-abcd1234.json"
    stale_file.write_text("{")
    live = tmp_path / f".model.tmp-{os.getpid()}-00000000"  # a live writer's: kept
    live.mkdir()
    other = tmp_path / ".model.tmp-notes"  # not ours: kept
    other.write_text("")
    assert remove_stale_temporaries(tmp_path / "model") == [stale_dir]
    write_text(tmp_path / "eval.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["eval.json", live.name, other.name])


def test_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        assert atomic.file_mode() == 0o640
        write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_model_directory_files_all_get_the_umask_mode(tiny_run, tmp_path):
    from lstm_pipeline.artifacts.model_dir import load_pretrained, save_pretrained

    model, tokenizer, config = load_pretrained(tiny_run)
    out = save_pretrained(model, config["model"], tokenizer, tmp_path / "model", model_card=False)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {atomic.file_mode()}, modes  # model.safetensors was 0600


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_under_a_file_size_limit_leaves_no_corrupt_file(tiny_run, tmp_path, fmt):
    """``ulimit -f 20`` (20 KiB): export fails in one line, with no file under the real name and no temporary."""
    shutil.copytree(tiny_run / "model", tmp_path / "run" / "model")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, "-m", "lstm_pipeline.cli", "export", f"run={tmp_path / 'run'}",
                           f"format={fmt}", "hydra.run.dir=.", "hydra.output_subdir=null",
                           "hydra/job_logging=none", "hydra/hydra_logging=none"],
                          capture_output=True, text=True, cwd=tmp_path, env=env,
                          preexec_fn=_limit_file_size(20 * 1024), timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "the file-size limit (ulimit -f) was reached" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    export = tmp_path / "run" / "export"
    assert not export.exists() or list(export.iterdir()) == []
    # without the limit the same export succeeds (the model is larger than 20 KiB, so the limit was the cause)
    run_cli("export", f"run={tmp_path / 'run'}", f"format={fmt}", cwd=tmp_path)
    assert max(p.stat().st_size for p in export.iterdir()) > 20 * 1024


def test_a_full_disk_while_saving_the_model_keeps_the_old_one(tiny_run, tmp_path, monkeypatch):
    """Training's export (save_pretrained): a full disk is a StorageError (one line), the old model/ stays."""
    from lstm_pipeline.artifacts import model_dir as md

    model, tokenizer, config = md.load_pretrained(tiny_run)
    out = md.save_pretrained(model, config["model"], tokenizer, tmp_path / "model", model_card=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*a, **k):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")  # safetensors'

    monkeypatch.setattr(md, "save_model", full)
    with pytest.raises(StorageError, match="the disk is full"):
        md.save_pretrained(model, config["model"], tokenizer, out, model_card=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
