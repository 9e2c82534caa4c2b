"""The bad-input sweep (issue 13): each mistake a user can make on the command line or in a model
directory gives ONE line naming the setting or file and what to do, exit status 1, no traceback,
and (for train) no run directory left behind. One row per input: (command, overrides, damage to a
copy of a trained run, the expected message fragment).

The sweep runs each input through ``lstm_pipeline.cli.main`` in this process (the ``cli_in_process``
fixture: the same status, output and clean-up checks, without a new interpreter's imports per row);
``test_bad_input_through_a_process`` runs a few rows as real ``python -m lstm_pipeline.cli`` processes,
so the exit status and stderr of the process itself stay tested."""
import json
import shutil
import struct

import pytest

from helpers import run_cli

TRAIN = ["data=text", "model.hidden_size=16", "model.embedding_dim=8", "batching.batch_size=2",
         "batching.bptt=8", "trainer.max_steps=2", "trainer.enable_progress_bar=false", "sample.max_new_tokens=4"]


def _truncate(model):
    p = model / "model.safetensors"
    p.write_bytes(p.read_bytes()[:100])


def _empty(name):
    return lambda model: (model / name).write_bytes(b"")


def _remove(name):
    return lambda model: (model / name).unlink()


def _huge_header(model):
    p = model / "model.safetensors"
    data = p.read_bytes()
    p.write_bytes(struct.pack("<Q", 10 ** 15) + data[8:])


def _drop_tensor(model):
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, model / "model.safetensors")


def _wrong_shape(model):
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    tensors[sorted(tensors)[0]] = torch.zeros(3)
    save_file(tensors, model / "model.safetensors")


def _write(name, text):
    return lambda model: (model / name).write_text(text)


def _edit_config(**changes):
    def edit(model):
        config = json.loads((model / "config.json").read_text())
        for key, value in changes.items():
            if key == "model_field":
                config["model"][value] = 3
            else:
                config[key] = value
        (model / "config.json").write_text(json.dumps(config))
    return edit


def _token_beyond_vocab(model):
    """A token's id moved past the model's embedding rows, the count of tokens unchanged (was: torch's
    "index out of range in self" when the token is used)."""
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    tok = json.loads((model / "tokenizer.json").read_text())
    ids = tok["model"]["vocab"]
    ids[max(ids, key=ids.get)] = vocab + 3  # the last token: its id 3 past the last row
    (model / "tokenizer.json").write_text(json.dumps(tok))


def _nan_weights(model):
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone().fill_(float("nan"))
    save_file(tensors, model / "model.safetensors")


PUSH = ["repo_id=org/name", "dry_run=true"]


def _integer_weights(model):
    """Every tensor stored as int64 (was: loaded, cast, and printed garbage)."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(model / "model.safetensors")
    save_file({k: v.to(torch.int64) for k, v in tensors.items()}, model / "model.safetensors")


# (id, command, overrides, damage, expected fragment of the one error line)
CASES = [
    # value types, before anything runs
    ("max_steps_abc", "train", ["trainer.max_steps=abc"], None, "trainer.max_steps='abc' is not valid: lightning.Trainer takes an integer"),
    ("hidden_float", "train", ["model.hidden_size=32.5"], None, "model.hidden_size=32.5 is not valid"),
    ("precision_typo", "train", ["trainer.precision=bf15"], None, "trainer.precision='bf15' is not valid"),
    # misspelled keys inside _target_ nodes, checked against the target's signature
    ("optim_lrr", "train", ["+optim.lrr=1"], None, "optim.lrr: optim (torch.optim.AdamW) does not take the setting 'lrr'. Did you mean 'lr'?"),
    ("sched_tmaxx", "train", ["scheduler=cosine", "+scheduler.T_maxx=3"], None, "Did you mean 'T_max'?"),
    ("logger_savedirr", "train", ["+logger.save_dirr=x"], None, "Did you mean 'save_dir'?"),
    ("callback_target_typo", "train", ["+callbacks.es={_target_:lightning.pytorch.callbacks.EarlyStopping,monitr:val_loss}"],
     None, "callbacks.es.monitr"),
    ("target_unimportable", "train", ["optim._target_=torch.optim.Adamm"], None, "optim._target_=torch.optim.Adamm cannot be imported"),
    ("checkpoint_key_typo", "train", ["+checkpoint.every_n_train_step=3"], None, "Did you mean 'every_n_train_steps'?"),
    ("chat_template_jinja", "train", ["chat_template={% for m in messages %}{{ m.content }}"], None,
     "chat_template is not valid Jinja: Unexpected end of template"),
    ("trainer_logger", "train", ["trainer.logger=false"], None, "trainer.logger is set by the pipeline itself"),
    ("optimized_metric_unknown", "train", ["optimized_metric=val_losss", "trainer.max_steps=1"], None,
     "optimized_metric=val_losss is not a metric a run reports. Did you mean 'val_loss'?"),
    # hardware the machine does not have
    ("accelerator_gpu", "train", ["trainer.accelerator=gpu"], None, "trainer.accelerator=gpu but this machine has no usable GPU"),
    ("devices_zero", "train", ["trainer.devices=0"], None, "trainer.devices=0 is not valid"),
    # ranges (the sample printed after training is checked before training)
    ("bptt_zero", "train", ["batching.bptt=0"], None, "batching.bptt=0 is not valid: it must be a positive integer"),
    ("batch_negative", "train", ["batching.batch_size=-4"], None, "batching.batch_size=-4 is not valid: it must be a positive integer"),
    ("adaptive_cutoffs_not_increasing", "train", ["model.output=adaptive", "model.adaptive_cutoffs=[20,10]"], None,
     "model.adaptive_cutoffs must be increasing whole numbers from 1 to vocab_size - 1"),
    ("adaptive_cutoffs_beyond_vocab", "train", ["model.output=adaptive", "model.adaptive_cutoffs=[10,100000]"], None,
     "model.adaptive_cutoffs must be increasing whole numbers from 1 to vocab_size - 1"),
    ("adaptive_tied", "train", ["model.output=adaptive", "model.tie_weights=true"], None,
     "model.tie_weights=true does not combine with model.output=adaptive"),
    ("output_typo", "train", ["model.output=adaptiv"], None, "model.output must be 'full' or 'adaptive', not 'adaptiv'"),
    # a time budget, an initialisation scheme, xLSTM cells' shapes (issues 15 and 17), through the CLI
    ("budget_not_a_time", "train", ["budget=abc"], None, "budget=abc is not a training time"),
    ("init_typo", "train", ["model.init=xavier"], None, "model.init must be one of torch, word_language_model"),
    ("mlstm_heads_not_dividing", "train", ["model/cell=mlstm", "model.cell.num_heads=3"], None,
     "model.cell.num_heads=3 must divide the width of the heads"),
    ("xlstm_slstm_at_beyond_blocks", "train", ["model/cell=xlstm", "model.cell.slstm_at=[5]"], None,
     "model.cell.slstm_at=[5] names blocks outside 0..1"),
    ("sample_tokens_negative", "train", ["sample.max_new_tokens=-5"], None, "sample.max_new_tokens=-5 is not valid"),
    ("sample_temperature_zero", "train", ["sample.temperature=0"], None, "sample.temperature=0.0 is not valid: it must be > 0"),
    # resume
    ("ckpt_missing", "train", ["ckpt_path=no/such/run"], None, "ckpt_path=no/such/run does not exist"),
    ("ckpt_not_a_checkpoint", "train", ["ckpt_path=CORPUS"], None, "is not a checkpoint (.ckpt file)"),
    ("ckpt_dir_without_last", "train", ["ckpt_path=EMPTYDIR"], None, "has no checkpoints/last.ckpt"),
    # generate / evaluate on a damaged or mismatched model directory
    ("safetensors_truncated", "generate", [], _truncate, "model.safetensors is damaged (not a readable safetensors file"),
    ("safetensors_empty", "generate", [], _empty("model.safetensors"), "model.safetensors is damaged"),
    ("safetensors_huge_header", "evaluate", [], _huge_header, "model.safetensors is damaged"),
    ("safetensors_missing_tensor", "generate", [], _drop_tensor, "is missing"),
    ("safetensors_wrong_shape", "evaluate", [], _wrong_shape, "has shape [3]"),
    ("tokenizer_malformed", "generate", [], _write("tokenizer.json", "{bad"), "tokenizer.json is damaged (not valid JSON"),
    ("tokenizer_empty", "generate", [], _empty("tokenizer.json"), "tokenizer.json is damaged (the file is empty)"),
    ("generate_quantize_int4", "generate", ["quantize=int4"], None, "quantize must be one of none, int8; got 'int4'"),
    ("generate_eos_unknown", "generate", ["eos_token='<nope>'"], None, "eos_token='<nope>' is not in the tokenizer's vocabulary"),
    ("generate_processor_unknown", "generate", ["decoding=greedy", "decoding.processors=[no_such]"], None,
     "no_such"),
    ("generate_processor_setting_typo", "generate", ["decoding=greedy", "decoding.processors={top_k: {topk: 3}}"],
     None, "Did you mean 'top_k'?"),
    ("tokenizer_not_a_tokenizer", "evaluate", [], _write("tokenizer.json", '{"a": 1}'), "tokenizer.json is damaged (not a tokenizer"),
    ("config_list", "generate", [], _write("config.json", "[1, 2]"), "config.json is damaged (expected a JSON object, found list)"),
    ("config_string_vocab", "generate", [], _edit_config(vocab_size="65"), "vocab_size must be a positive integer, found '65'"),
    ("config_unknown_field", "evaluate", [], _edit_config(model_field="hidden_sizee"), "model setting 'hidden_sizee'"),
    ("generate_cuda", "generate", ["device=cuda"], None, "device=cuda but this machine has no usable GPU"),
    ("evaluate_batch_zero", "evaluate", ["batch_size=0"], None, "batch_size=0 is not valid: it must be a positive integer"),
    ("evaluate_bptt_zero", "evaluate", ["bptt=0"], None, "bptt=0 is not valid: it must be a positive integer"),
    # the data's own faults: one line naming the file and the setting
    ("jsonl_column_of_numbers", "train", ["data=files", "data.path=NUMS"], None,
     "data.text_column='text': the column must hold text (strings) but holds numbers (train split in NUMS). "
     "Set data.text_column to a column of text: body."),
    ("jsonl_column_mixed", "train", ["data=files", "data.path=MIXED"], None,
     "the column must hold text (strings) but holds a mix of text and other values"),
    ("not_utf8", "train", ["data.path=BADUTF8"], None,
     "BADUTF8 is not valid UTF-8: byte offset 6 (invalid start byte). Fix the file, or set data.encoding_errors=replace"),
    ("hub_not_utf8", "train", ["data=hub", "data.path=BADDIR", "data.val_fraction=0.3", "data.test_fraction=0.3"], None,
     "data=hub reads files strictly: fix the file, or read the files with data=files"),
    # a path that exists but is the wrong kind is not reported as missing
    ("data_path_directory", "train", ["data.path=TEXTDIR"], None, "data.path: 'TEXTDIR' is a directory, not a data file"),
    ("disk_plain_directory", "train", ["data=disk", "data.path=TEXTDIR"], None,
     "data.path='TEXTDIR' is a directory but not one written by Dataset.save_to_disk"),
    ("tokenizer_path_directory", "train", ["tokenizer=pretrained", "tokenizer.path=EMPTYDIR"], None,
     "tokenizer.path='EMPTYDIR' is a directory without a tokenizer.json"),
    ("run_empty_directory", "generate", ["run=EMPTYDIR"], None,
     "run=EMPTYDIR is a directory but not a model directory: it holds no config.json"),
    ("run_is_a_file", "evaluate", ["run=CORPUS"], None, "run=CORPUS is a file, not a run or model directory"),
    ("run_unfinished", "export", ["run=UNFINISHED"], None,
     "run=UNFINISHED is a run directory without an exported model"),
    ("run_model_without_weights", "generate", [], _remove("model.safetensors"),
     "has config.json but no model.safetensors"),
    ("prompts_file_directory", "generate", ["prompts_file=EMPTYDIR"], None, "prompts_file=EMPTYDIR is a directory, not a text file"),
    ("plot_empty_directory", "plot", ["run=EMPTYDIR"], None, "run=EMPTYDIR has no metrics.csv"),
    # every message names the file or the setting it is about
    ("batch_larger_than_corpus", "train", ["batching.batch_size=30000"], None,
     "too short for 30000 streams (batch_size 30000 x 1 processes). Lower batching.batch_size"),
    ("eval_batch_larger_than_split", "train", ["batching.eval_batch_size=9000"], None,
     "The validation split has 1051 tokens: too short for 9000 streams (batch_size 9000 x 1 processes). "
     "Lower batching.eval_batch_size"),
    ("one_short_line_kept_whole", "train", ["data.path=ONELINE", "data.max_row_chars=0"], None,
     "The corpus (ONELINE) has only 1 rows: too few to split off validation (data.val_fraction=0.05)"),
    ("max_row_chars_tiny", "train", ["data.max_row_chars=5"], None, "data.max_row_chars=5 is not valid"),
    ("empty_text_column", "train", ["data=files", "data.path=EMPTYCOL"], None,
     "The train split's column 'text' (EMPTYCOL) is empty (no text in any row)"),
    # issue 24 case 4: were tracebacks (and left the run directory with its .lock), now one line
    ("lr_not_a_number", "train", ["optim.lr=abc"], None,
     "optim.lr='abc' is not valid: torch.optim.AdamW takes a number for 'lr'. Set optim.lr=<a number>."),
    ("max_steps_negative", "train", ["trainer.max_steps=-5"], None,
     "trainer.max_steps=-5 is not valid: give a number >= 0, or -1 for no limit"),
    ("val_check_interval_negative", "train", ["trainer.val_check_interval=-3"], None,
     "trainer.val_check_interval=-3 is not valid: give a positive number of training batches"),
    ("bpe_vocab_negative", "train", ["tokenizer=bpe", "tokenizer.vocab_size=-5"], None,
     "tokenizer.vocab_size=-5 is not valid: it must be a positive integer"),
    ("generate_output_file_directory", "generate", ["prompts_file=PROMPTS", "output_file=EMPTYDIR"], None,
     "output_file=EMPTYDIR is a directory: give a file name"),
    ("export_out_directory", "export", ["out=EMPTYDIR"], None, "out=EMPTYDIR is a directory: give a file name"),
    ("export_format_unknown", "export", ["format=tflite"], None,
     "format=tflite is not an export format: use one of format=torchscript, format=onnx"),
    # issue 24 case 5: the message names the setting, the file, the line
    ("embedding_dim_zero", "train", ["model.embedding_dim=0"], None,
     "model.embedding_dim=0 is not valid: it must be a positive integer (the width of the token embeddings"),
    ("tokenizer_id_beyond_vocab", "generate", [], _token_beyond_vocab,
     "beyond the model's vocabulary of"),
    ("prompts_file_not_utf8", "generate", ["prompts_file=LATIN1"], None,
     "prompts_file=LATIN1 is not valid UTF-8: line 2, byte offset 10 (invalid start byte)"),
    # issue 25 case 7: degenerate inputs that trained, loaded or generated silently
    ("corpus_only_line_breaks", "train", ["data.path=NEWLINES"], None,
     "NEWLINES holds only line breaks (400 rows): there is no text to learn from"),
    ("corpus_only_spaces_and_line_breaks", "train", ["data=files", "data.path=BLANKS"], None,
     "BLANKS holds only spaces, tabs and line breaks"),
    ("gradient_clip_negative", "train", ["trainer.gradient_clip_val=-1"], None,
     "trainer.gradient_clip_val=-1 is not valid: it must be >= 0"),
    ("sample_temperature_negative_without_a_sample", "train", ["sample.temperature=-1", "sample.max_new_tokens=0"],
     None, "sample.temperature=-1.0 is not valid: it must be > 0"),
    ("safetensors_int64", "generate", [], _integer_weights, "has dtype I64, not a floating-point type"),
    # issue 25 case 9: more hypotheses asked for than exist (top_k=1 leaves one continuation a step)
    ("beam_more_sequences_than_hypotheses", "generate",
     ["decoding=beam", "decoding.num_beams=8", "decoding.num_return_sequences=8", "decoding.processors={top_k: {top_k: 1}}"],
     None, "decoding.num_return_sequences=8, but prompt 0 has only 1 distinct hypotheses"),
    # every problem at once, one a line
    ("two_bad_settings", "train", ["trainer.max_steps=-5", "model.embedding_dim=0"], None,
     "2 problems in the train config, one a line:"),
    ("override_unreadable", "generate", ["decoding=<x>"], None,
     "decoding=<x>: Hydra cannot read this value as typed. Quote it for Hydra inside shell quotes: \"decoding='<x>'\""),
    # push runs the checks load runs (issue 25): nothing load would refuse is uploaded, not even listed
    ("push_safetensors_truncated", "push", PUSH, _truncate, "model.safetensors is damaged (not a readable safetensors file"),
    ("push_nan_weights", "push", PUSH, _nan_weights, "the weights are not finite"),
    ("push_config_not_json", "push", PUSH, _write("config.json", "{bad"), "config.json is damaged (not valid JSON"),
    # and huggingface_hub's own repo id validation
    ("push_repo_id_dotdot", "push", ["repo_id=..", "dry_run=true"], None, "repo_id='..' is not a Hub repo id"),
    ("push_repo_id_parent", "push", ["repo_id=../x", "dry_run=true"], None, "repo_id='../x' is not a Hub repo id"),
    ("push_repo_id_trailing_dotdot", "push", ["repo_id=a/..", "dry_run=true"], None, "repo_id='a/..' is not a Hub repo id"),
    ("push_repo_id_space", "push", ["repo_id='org/na me'", "dry_run=true"], None, "repo_id='org/na me' is not a Hub repo id"),
]


def _bad_data(tmp_path, tiny_corpus):
    """The files and directories the CASES name by placeholder (NUMS, TEXTDIR, ...)."""
    text = tiny_corpus.read_text()
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text(text)
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    (tmp_path / "unfinished" / ".hydra").mkdir()
    with open(tmp_path / "nums.jsonl", "w") as f:
        for i in range(200):
            f.write(json.dumps({"text": i * 7, "body": text[i * 50: i * 50 + 50]}) + "\n")
    with open(tmp_path / "mixed.jsonl", "w") as f:
        for i in range(200):
            f.write(json.dumps({"text": i if i % 2 else text[i * 50: i * 50 + 50]}) + "\n")
    (tmp_path / "bad.txt").write_bytes(b"ROMEO:\xff\n" + text.encode())
    (tmp_path / "oneline.txt").write_text(text[:3000].replace("\n", " "))
    (tmp_path / "emptycol.jsonl").write_text("".join(json.dumps({"text": "", "x": "a"}) + "\n" for _ in range(100)))
    (tmp_path / "baddir").mkdir()
    (tmp_path / "baddir" / "bad.txt").write_bytes((tmp_path / "bad.txt").read_bytes())
    (tmp_path / "prompts.txt").write_text("ROMEO:\nJULIET:\n")
    (tmp_path / "latin1.txt").write_bytes(b"ROMEO:\ncaf\xff au lait\n")
    (tmp_path / "newlines.txt").write_text("\n" * 400)
    (tmp_path / "blanks.txt").write_text(" \n  \n\t \n" * 200)
    # longest names first: NUMS must not eat the start of another placeholder
    return {"UNFINISHED": tmp_path / "unfinished", "EMPTYDIR": tmp_path / "empty", "TEXTDIR": tmp_path / "texts",
            "BADUTF8": tmp_path / "bad.txt", "BADDIR": tmp_path / "baddir", "CORPUS": tiny_corpus,
            "MIXED": tmp_path / "mixed.jsonl", "NUMS": tmp_path / "nums.jsonl", "ONELINE": tmp_path / "oneline.txt",
            "EMPTYCOL": tmp_path / "emptycol.jsonl", "PROMPTS": tmp_path / "prompts.txt",
            "LATIN1": tmp_path / "latin1.txt", "NEWLINES": tmp_path / "newlines.txt", "BLANKS": tmp_path / "blanks.txt"}


def _bad_input(command, overrides, damage, expected, tiny_run, tiny_corpus, tmp_path):
    """The command line of one CASES row (placeholders filled, the model copied and damaged), the
    expected fragment and the run directory that must not be left behind."""
    places = _bad_data(tmp_path, tiny_corpus)
    for name, path in places.items():
        overrides = [o.replace(name, str(path)) for o in overrides]
        expected = expected.replace(name, str(path))
    if command == "train":
        run_dir = tmp_path / "run"
        args = [*TRAIN, f"data.path={tiny_corpus}", *overrides, f"hydra.run.dir={run_dir}"]
    else:
        run_dir = tmp_path / "copy"
        shutil.copytree(tiny_run, run_dir)
        if damage is not None:
            damage(run_dir / "model")
        own_run = any(o.startswith("run=") for o in overrides)
        args = ([] if own_run else [f"run={run_dir}"]) + overrides + (["max_new_tokens=3"] if command == "generate" else [])
    return [command, *args], expected, run_dir


def _assert_one_clear_line(proc, command, expected, run_dir):
    assert proc.returncode == 1, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"lstm-pipeline {command}: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert expected in errors[0], errors[0]
    if command == "train":
        assert not run_dir.exists(), sorted(p.name for p in run_dir.iterdir())


def _skip_on_gpu(expected):
    import torch

    if "gpu" in expected.lower() and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")


@pytest.mark.parametrize("command,overrides,damage,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(command, overrides, damage, expected, tiny_run, tiny_corpus, tmp_path,
                                     cli_in_process):
    _skip_on_gpu(expected)
    args, expected, run_dir = _bad_input(command, overrides, damage, expected, tiny_run, tiny_corpus, tmp_path)
    proc = cli_in_process(*args, cwd=tmp_path, check=False)
    _assert_one_clear_line(proc, command, expected, run_dir)


#: rows run as real processes: a train setting checked inside the Hydra app (its run directory
#: removed), an override refused before Hydra runs, a damaged model directory read by generate
THROUGH_A_PROCESS = ["max_steps_abc", "override_unreadable", "safetensors_truncated"]


@pytest.mark.parametrize("case", THROUGH_A_PROCESS)
def test_bad_input_through_a_process(case, tiny_run, tiny_corpus, tmp_path):
    command, overrides, damage, expected = next(c[1:] for c in CASES if c[0] == case)
    args, expected, run_dir = _bad_input(command, overrides, damage, expected, tiny_run, tiny_corpus, tmp_path)
    proc = run_cli(*args, cwd=tmp_path, check=False)
    _assert_one_clear_line(proc, command, expected, run_dir)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_utf8_errors_advice_works_as_printed(command, tiny_run, tiny_corpus, tmp_path, cli_in_process):
    """The UTF-8 error advises data.encoding_errors=replace: that setting, typed as printed, works with
    data=text (was: Hydra's "Key 'encoding_errors' is not in struct")."""
    import re

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ROMEO:\xff\n" + tiny_corpus.read_bytes())
    if command == "train":
        args = [*TRAIN, "data=text", f"data.path={bad}", f"hydra.run.dir={tmp_path / 'run'}"]
    else:
        args = [f"run={tiny_run}", "data=text", f"data.path={bad}", "splits=[test]", f"report={tmp_path / 'r.json'}"]
    proc = cli_in_process(command, *args, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "is not valid UTF-8" in proc.stderr, proc.stderr[-2000:]
    advice = re.search(r"set (data\.encoding_errors=\w+)", proc.stderr).group(1)
    assert advice == "data.encoding_errors=replace"
    proc = cli_in_process(command, *args, advice, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_problem_is_reported_at_once(tiny_corpus, tmp_path, cli_in_process):
    """Two bad settings: one error that lists both, a line each, and no run directory (issue 24)."""
    run_dir = tmp_path / "run"
    proc = cli_in_process("train", *TRAIN, f"data.path={tiny_corpus}", "trainer.max_steps=-5", "model.embedding_dim=0",
                          "optim.lr=abc", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert "lstm-pipeline train: error: 3 problems in the train config, one a line:" in lines[0]
    assert lines[1].startswith("  - ") and "model.embedding_dim=0 is not valid" in proc.stderr
    assert "\n  - trainer.max_steps=-5 is not valid" in proc.stderr and not run_dir.exists()
    assert any(line.startswith("  - optim.lr='abc' is not valid") for line in lines)


def test_a_temperature_near_zero_prints_what_greedy_prints(tiny_run, tmp_path, cli_in_process):
    """Issue 25 case 8: decoding.temperature=1e-40 printed the last vocabulary id over and over
    (logits / 1e-40 overflowed to inf, the probabilities were NaN); it now prints greedy's text."""
    common = [f"run={tiny_run}", "prompt=ROMEO:", "max_new_tokens=40"]
    greedy = cli_in_process("generate", *common, "decoding=greedy", cwd=tmp_path)
    cold = cli_in_process("generate", *common, "decoding=sample", "decoding.temperature=1e-40", cwd=tmp_path)
    assert cold.returncode == 0 and cold.stdout == greedy.stdout, (cold.stdout, greedy.stdout)
