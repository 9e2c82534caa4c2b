"""What a newcomer tripped on (issue 13): JSON-lines records run together, export's .json naming the
tokenizer relative to where export ran, evaluate overwriting eval.json without saying what it scored."""
import json
import os
import shutil

from lstm_pipeline.data.pipeline import prepare_corpus


def test_json_lines_records_are_kept_apart_by_default(tmp_path):
    rows = [f"record {i} ends here." for i in range(200)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
    corpus = prepare_corpus({"name": "files", "path": str(tmp_path / "train.jsonl"), "cache_dir": str(tmp_path / "c")},
                            {"name": "char"})
    text = corpus.tokenizer.decode(corpus.ids["train"][:200].tolist())
    assert "record 0 ends here.\nrecord 1 ends here.\n" in text, text[:80]


def test_export_json_names_the_tokenizer_relative_to_itself(tiny_run, tmp_path, cli_in_process):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # run from one directory, with a relative run path, then read from another place
    cli_in_process("export", "run=run", "format=torchscript", cwd=tmp_path)
    meta_path = run / "export" / "model.step.pt.json"
    meta = json.loads(meta_path.read_text())
    tok = meta["tokenizer"]
    resolved = tok if os.path.isabs(tok) else os.path.normpath(os.path.join(meta_path.parent, tok))
    assert os.path.samefile(resolved, run / "model" / "tokenizer.json"), tok
    # the run moved with its export: the name still holds
    moved = tmp_path / "moved"
    shutil.move(str(run), moved)
    meta_path = moved / "export" / "model.step.pt.json"
    assert (meta_path.parent / json.loads(meta_path.read_text())["tokenizer"]).is_file()


def test_evaluate_records_the_data_it_scored_and_keeps_eval_json(tiny_run, tmp_path, cli_in_process):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cli_in_process("evaluate", f"run={run}", "splits=[test]", cwd=tmp_path)
    own = json.loads((run / "eval.json").read_text())
    assert own["data"]["own"] is True and own["data"]["name"] == "text"
    other = tmp_path / "other.txt"
    other.write_text("ROMEO: speak.\n" * 500)
    cli_in_process("evaluate", f"run={run}", "data=text", f"data.path={other}", "splits=[test]", cwd=tmp_path)
    assert json.loads((run / "eval.json").read_text()) == own  # not overwritten by other data's scores
    (report,) = run.glob("eval-text-*.json")
    scored = json.loads(report.read_text())
    assert scored["data"]["own"] is False and scored["data"]["path"] == str(other)


def test_eos_token_and_stop_strings_take_angle_brackets_as_typed(tiny_corpus, tmp_path, cli_in_process):
    """docs/generation.md's eos_token="<eos>" (the shell passes eos_token=<eos>) was Hydra's
    LexerNoViableAltException, for train (data.eos_token) and generate alike."""
    run = tmp_path / "run"
    cli_in_process("train", "data=text", f"data.path={tiny_corpus}", "data.eos_token=<eos>", "model.hidden_size=16",
                   "model.embedding_dim=8", "batching.batch_size=2", "batching.bptt=8", "trainer.max_steps=2",
                   "trainer.enable_progress_bar=false", "sample.max_new_tokens=0", f"hydra.run.dir={run}", cwd=tmp_path)
    assert json.loads((run / "model" / "config.json").read_text())["eos_token_id"] is not None
    for args in (["eos_token=<eos>"], ["stop_strings=[<eos>,e]"], ["eos_token=null"], ["eos_token=none"]):
        proc = cli_in_process("generate", f"run={run}", "max_new_tokens=5", "seed=1", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 0, (args, proc.stderr[-1500:])
    # a value Hydra cannot read under another key: one line saying how to quote it
    proc = cli_in_process("generate", f"run={run}", "decoding=<x>", cwd=tmp_path, check=False)
    lines = [l for l in proc.stderr.splitlines() if "error:" in l]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-1500:]
    assert "decoding=<x>: Hydra cannot read this value as typed" in lines[0] and "\"decoding='<x>'\"" in lines[0]
