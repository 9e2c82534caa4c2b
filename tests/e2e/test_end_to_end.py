"""train -> export -> generate -> evaluate through the real CLI, plus resume and bad input."""
import json

import pytest
import torch
from safetensors.torch import load_file

from lstm_pipeline.artifacts.model_dir import load_pretrained

from helpers import TINY


def test_run_directory_layout(tiny_run):
    assert (tiny_run / ".hydra" / "config.yaml").is_file()
    assert (tiny_run / "checkpoints" / "last.ckpt").is_file()
    assert list((tiny_run / "checkpoints").glob("best-*.ckpt"))
    model_dir = tiny_run / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["hidden_size"] == 32 and "val_bpc" in config["metrics"]
    assert not list(tiny_run.glob(".model.tmp-*"))  # the atomic export left no temporary dir


def test_exported_weights_equal_best_checkpoint(tiny_run):
    best = next((tiny_run / "checkpoints").glob("best-*.ckpt"))
    ckpt = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    exported = load_file(str(tiny_run / "model" / "model.safetensors"))
    assert exported.keys() == {k.removeprefix("model.") for k in ckpt}
    for k, v in exported.items():
        assert torch.equal(v, ckpt[f"model.{k}"])


def test_generate_streams_and_is_reproducible(tiny_run, cli_in_process):
    args = ["generate", f"run={tiny_run}", "prompt=ROMEO:", "max_new_tokens=40", "seed=7"]
    a = cli_in_process(*args).stdout
    b = cli_in_process(*args).stdout
    assert a == b and a.startswith("ROMEO:") and len(a.rstrip("\n")) == len("ROMEO:") + 40
    c = cli_in_process(*args[:-1], "seed=8").stdout
    assert c != a


def test_generate_decodings(tiny_run, cli_in_process):
    greedy1 = cli_in_process("generate", f"run={tiny_run}", "decoding=greedy", "prompt=First", "max_new_tokens=30").stdout
    greedy2 = cli_in_process("generate", f"run={tiny_run}", "decoding=greedy", "prompt=First", "max_new_tokens=30").stdout
    assert greedy1 == greedy2
    model, tok, config = load_pretrained(tiny_run)
    # greedy through the CLI equals argmax stepping done by hand with the fused forward
    ids = tok.encode("First")
    out = []
    with torch.no_grad():
        logits, state = model(torch.tensor([ids]))
        nxt = int(logits[0, -1].argmax())
        for _ in range(30):
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state)
            nxt = int(logits[0, -1].argmax())
    assert greedy1.rstrip("\n") == "First" + tok.decode(out)
    nucleus = cli_in_process("generate", f"run={tiny_run}", "decoding=nucleus", "decoding.top_p=0.5", "prompt=First",
                             "max_new_tokens=30", "seed=1").stdout
    assert nucleus.startswith("First")


def test_evaluate_reports_loss_ppl_bpc(tiny_run, cli_in_process):
    out = cli_in_process("evaluate", f"run={tiny_run}").stdout
    assert "validation: loss" in out and "test: loss" in out and "bpc" in out
    report = json.loads((tiny_run / "eval.json").read_text())
    config = json.loads((tiny_run / "model" / "config.json").read_text())
    # evaluate carries the state across the split as training's validation does: same loss
    assert report["validation"]["loss"] == pytest.approx(config["metrics"]["val_loss"], rel=0.05)


def test_evaluate_on_other_data_selected_like_train(tiny_run, tmp_path, cli_in_process):
    """``data=<preset> data.path=...`` as in train (docs/evaluation.md); a repeated text scores better."""
    other = tmp_path / "other.txt"
    other.write_text("ROMEO: speak.\n" * 3000)
    report = tmp_path / "other.json"
    out = cli_in_process("evaluate", f"run={tiny_run}", "data=text", f"data.path={other}", "splits=[test]",
                         f"report={report}").stdout
    assert "test: loss" in out
    own_report = tmp_path / "own.json"
    cli_in_process("evaluate", f"run={tiny_run}", "splits=[test]", f"report={own_report}")
    got, own = (json.loads(r.read_text())["test"] for r in (report, own_report))
    # the other text (42,000 characters) is twice the run's own (20,000): its test split is too
    assert got["tokens"] > 1.5 * own["tokens"] and got["loss"] != own["loss"]


def test_resume_continues_from_last_checkpoint(tmp_path, tiny_corpus, cli_in_process):
    run_dir = tmp_path / "run"
    base = ["data=text", f"data.path={tiny_corpus}", *TINY, "sample.max_new_tokens=0"]
    cli_in_process("train", *base, f"hydra.run.dir={run_dir}", "trainer.max_steps=6", cwd=tmp_path)
    step6 = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert step6["global_step"] == 6
    # resume with only ckpt_path (the run's own overrides are reused) and a larger budget
    cli_in_process("train", f"ckpt_path={run_dir}", "trainer.max_steps=12", cwd=tmp_path)
    step12 = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert step12["global_step"] == 12
    assert step12["hyper_parameters"]["model"]["hidden_size"] == 32  # the original config, recomposed
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_ntasgd_switch_is_written_to_the_run_log(tmp_path, tiny_corpus, cli_in_process):
    run_dir = tmp_path / "run"
    cli_in_process("train", "data=text", f"data.path={tiny_corpus}", *TINY, "optim=ntasgd", "optim.nonmono=0",
                   "trainer.max_steps=4", "trainer.val_check_interval=2", "sample.max_new_tokens=0",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    line = "NT-ASGD: validation loss"
    assert line in (run_dir / "train.log").read_text() and "averaging from step 2" in (run_dir / "train.log").read_text()


def test_bad_inputs_have_clear_messages(tmp_path, tiny_run, cli_in_process):
    r = cli_in_process("train", "+model.hiden_size=3", check=False, cwd=tmp_path)
    assert r.returncode == 1 and "Did you mean 'hidden_size'" in r.stderr
    assert not list(tmp_path.glob("runs/*/*")), "a run stopped by bad input leaves no run directory"
    r = cli_in_process("train", "model/cell=lsmt", check=False, cwd=tmp_path)
    assert r.returncode != 0 and "lstm" in r.stderr and "gru" in r.stderr
    r = cli_in_process("train", "model.cell.name=lsmt", *TINY, check=False, cwd=tmp_path)
    assert "Unknown cell 'lsmt'. Available cells: " in r.stderr
    r = cli_in_process("train", "data=text", f"data.path={tmp_path}/nope.txt", *TINY, check=False, cwd=tmp_path)
    assert "does not exist" in r.stderr and "nope.txt" in r.stderr
    (tmp_path / "empty.txt").write_text("")
    r = cli_in_process("train", "data=text", f"data.path={tmp_path}/empty.txt", *TINY, check=False, cwd=tmp_path)
    assert "is empty" in r.stderr
    (tmp_path / "norun").mkdir()
    r = cli_in_process("generate", f"run={tmp_path}/norun", check=False)
    assert r.returncode != 0 and "holds no exported model" in r.stderr
    r = cli_in_process("generate", f"run={tiny_run}", "prompt=héllo", check=False)
    assert r.returncode != 0 and "'é' (U+00E9)" in r.stderr and "on_unknown" in r.stderr
    r = cli_in_process("generate", f"run={tiny_run}", "prompt=héllo", "on_unknown=skip", "max_new_tokens=5", "seed=1")
    assert r.stdout.startswith("héllo")
    r = cli_in_process("train", "batching.bptx=3", check=False, cwd=tmp_path)
    assert r.returncode != 0 and "bptx" in r.stderr
    r = cli_in_process("generate", f"run={tiny_run}", "decoding=nucleus", "decoding.top_p=1.5", check=False)
    assert r.returncode != 0 and "top_p must be in (0, 1]" in r.stderr


def test_help_and_cfg_job_for_every_command(tmp_path, cli_in_process):
    top = cli_in_process("--help").stdout
    for cmd in ("train", "generate", "evaluate", "plugins"):
        assert cmd in top
    for cmd in ("train", "generate", "evaluate"):
        out = cli_in_process(cmd, "--help", cwd=tmp_path).stdout
        assert "== Config ==" in out or "Powered by Hydra" in out
    job = cli_in_process("train", "--cfg", "job", "model/cell=gru", "model.hidden_size=77", cwd=tmp_path).stdout
    assert "name: gru" in job and "hidden_size: 77" in job
    assert not list(tmp_path.iterdir())  # --cfg and --help write nothing
    listing = cli_in_process("plugins").stdout
    assert "lstm_pipeline.cells" in listing and "lstm-pipeline" in listing and "lstm_pipeline.cells.fused:LSTM" in listing
    r = cli_in_process("trian", check=False)
    assert r.returncode == 2 and "unknown command 'trian'" in r.stderr
