"""Output and the terminal (issue 13): a console that is not UTF-8, a closed pipe, plot's inputs
and outputs."""
import subprocess
import sys

import pytest

from helpers import run_cli


def test_non_utf8_console_replaces_what_it_cannot_print(tiny_run, tmp_path):
    proc = run_cli("generate", f"run={tiny_run}", "prompt=ΩROMEO→", "on_unknown=skip", "max_new_tokens=10", "seed=1",
                   env={"PYTHONIOENCODING": "cp1252"}, cwd=tmp_path)
    assert proc.stdout.startswith("?ROMEO?"), proc.stdout


def test_train_on_a_non_utf8_console_finishes(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", "data=text", f"data.path={tiny_corpus}", "model.hidden_size=8", "model.embedding_dim=8",
                   "batching.batch_size=2", "batching.bptt=8", "trainer.max_steps=2", "trainer.enable_progress_bar=false",
                   "sample.max_new_tokens=5", "sample.prompt=ΩROMEO", f"hydra.run.dir={run}", env={"PYTHONIOENCODING": "cp1252"}, cwd=tmp_path)
    # the sample's prompt is printed after the export: the console cannot show Ω
    assert "--- sample" in proc.stdout and "?ROMEO" in proc.stdout, proc.stdout


@pytest.mark.parametrize("args", [["plugins"], ["--help"], ["train", "--help"], ["evaluate", "RUN"],
                                  ["generate", "RUN", "max_new_tokens=40"]],
                         ids=["plugins", "help", "train-help", "evaluate", "generate"])
def test_every_command_ends_quietly_on_a_closed_pipe(args, tiny_run, tmp_path):
    args = [a.replace("RUN", f"run={tiny_run}") for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "lstm_pipeline.cli", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` that has already gone
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err


def test_plot_multirun_dir_plots_every_job_and_out_file(tiny_corpus, tmp_path):
    pytest.importorskip("matplotlib")
    sweep = tmp_path / "sweep"
    run_cli("train", "-m", "data=text", f"data.path={tiny_corpus}", "model.embedding_dim=8", "batching.batch_size=2",
            "batching.bptt=8", "trainer.max_steps=2", "trainer.enable_progress_bar=false", "sample.max_new_tokens=0",
            "model.hidden_size=8,16", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    from lstm_pipeline.training.curves import expand_runs

    runs, labels = expand_runs([sweep])
    assert [r.name for r in runs] == ["0", "1"] and "model.hidden_size=8" in labels[0], labels
    proc = run_cli("plot", f"run={sweep}", "out=curves.png", "metrics=[loss,lr]", cwd=tmp_path)
    out = tmp_path / "curves.png"
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG", proc.stdout
    proc = run_cli("plot", f"run={sweep}", cwd=tmp_path)
    assert (sweep / "plots" / "loss.png").is_file()
