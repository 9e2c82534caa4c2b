"""Issue 24's failing cases 1, 2, 3 and 6, end to end on tiny runs: typed text is never interpolated,
a Lightning-named checkpoint and a run without last.ckpt resume, a missing key gets the same "did you
mean" with or without '+', and Python's generate takes a decoding by name."""
import json
import os

import pytest

from helpers import TINY

import lstm_pipeline

SHORT = [o for o in TINY if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))] + \
    ["trainer.val_check_interval=2", "sample.max_new_tokens=3"]


def _train(cli_in_process, tiny_corpus, run, *extra, cwd):
    return cli_in_process("train", "data=text", f"data.path={tiny_corpus}", *SHORT, f"hydra.run.dir={run}", *extra,
                          cwd=cwd)


# -- case 1: text a user types is text -------------------------------------------------------------------
def test_a_typed_prompt_is_recorded_as_typed_not_interpolated(cli_in_process, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    _train(cli_in_process, tiny_corpus, run, "trainer.max_steps=2", "sample.prompt='${oc.env:HOME}'", cwd=tmp_path)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["sample"]["prompt"] == "${oc.env:HOME}"
    assert os.environ["HOME"] not in (run / "model" / "config.json").read_text()


def test_generate_prints_the_prompt_as_typed(cli_in_process, tiny_run, tmp_path):
    proc = cli_in_process("generate", f"run={tiny_run}", "prompt=${now:%Y}", "max_new_tokens=3", "seed=0",
                          "on_unknown=replace", cwd=tmp_path)
    assert proc.stdout.startswith("${now:%Y}"), proc.stdout


# -- case 2: resuming from a checkpoint Lightning named, or from a run without last.ckpt -------------------
def test_resume_from_a_lightning_named_checkpoint_and_without_last(cli_in_process, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    _train(cli_in_process, tiny_corpus, run, "trainer.max_steps=4", cwd=tmp_path)
    best = next((run / "checkpoints").glob("best-step=*.ckpt"))
    proc = cli_in_process("train", f"ckpt_path='{best}'", "trainer.max_steps=6", cwd=tmp_path)  # quoted, as advised
    assert "does not exist" not in proc.stderr
    (run / "checkpoints" / "last.ckpt").unlink()
    proc = cli_in_process("train", f"ckpt_path={run}", "trainer.max_steps=8", cwd=tmp_path)
    assert f"resuming from {best.name}" in proc.stderr + proc.stdout or "resuming from best-step" in proc.stderr
    assert (run / "checkpoints" / "last.ckpt").is_file()  # the resumed run trained on and saved again


# -- case 3: a missing key gets the same advice with or without '+' -------------------------------------
@pytest.mark.parametrize("typed,suggestion", [("+model.hiden_size=3", "Did you mean 'hidden_size'?"),
                                              ("model.hiden_size=3", "Did you mean 'hidden_size'?"),
                                              ("batching.bptx=3", "Did you mean 'bptt'?"),
                                              ("+batching.bptx=3", "Did you mean 'bptt'?")])
def test_a_missing_key_is_one_line_with_a_suggestion(typed, suggestion, cli_in_process, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    proc = cli_in_process("train", "data=text", f"data.path={tiny_corpus}", typed, f"hydra.run.dir={run}",
                          cwd=tmp_path, check=False)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lstm-pipeline train: error:")]
    assert len(errors) == 1 and suggestion in errors[0], proc.stderr
    assert "To append" not in proc.stderr and "full_key" not in proc.stderr
    assert not run.exists()


# -- case 6: Python's generate takes the forms the CLI takes ---------------------------------------------
def test_python_generate_takes_a_decoder_name(tiny_run):
    lm = lstm_pipeline.from_pretrained(tiny_run)
    by_name = lm.generate("ROMEO:", max_new_tokens=8, decoding="greedy")
    assert by_name == lm.generate("ROMEO:", max_new_tokens=8, decoding={"name": "greedy"})
    assert len(by_name) > 0
    with pytest.raises(ValueError, match="pass a decoder's name .* a mapping of settings"):
        lm.generate("ROMEO:", max_new_tokens=2, decoding=3)


def test_python_train_config_keeps_typed_text(tmp_path):
    from lstm_pipeline.api import compose_train

    cfg, _ = compose_train(["sample.prompt=${oc.env:HOME}", "data=text", "data.path=x.txt"], run_dir=tmp_path / "r")
    assert cfg.sample.prompt == "${oc.env:HOME}"  # resolved config, read twice: still the text
    assert cfg.sample.prompt == "${oc.env:HOME}"
