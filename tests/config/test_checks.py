"""``config.checks.check(command, cfg)``: the one check pass over a composed config (issue 24). It
gathers every problem before anything is built, one line each, and keeps a lone problem's own type."""
import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lstm_pipeline.config.checks import check
from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.registry import ConfigError


def _compose(config_name, *overrides):
    register_schemas(config_name)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def _train(*overrides):
    return _compose("train", "data=text", "data.path=x.txt", "trainer.accelerator=cpu", *overrides)


def test_a_good_train_config_passes():
    check("train", _train())


@pytest.mark.parametrize("override,expected", [
    ("optim.lr=abc", "optim.lr='abc' is not valid: torch.optim.AdamW takes a number for 'lr'"),
    ("trainer.max_steps=-5", "trainer.max_steps=-5 is not valid: give a number >= 0, or -1 for no limit"),
    ("trainer.val_check_interval=-3", "trainer.val_check_interval=-3 is not valid"),
    ("trainer.val_check_interval=1.5", "trainer.val_check_interval=1.5 is not valid"),
    ("model.embedding_dim=0", "model.embedding_dim=0 is not valid: it must be a positive integer"),
    ("model.num_layers=-1", "model.num_layers=-1 is not valid"),
])
def test_one_bad_train_setting_is_one_line_naming_it(override, expected):
    with pytest.raises(ConfigError) as info:
        check("train", _train(override))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bpe_vocab_size_is_checked():
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_size=-5 is not valid"):
        check("train", _train("tokenizer=bpe", "tokenizer.vocab_size=-5"))


def test_every_problem_is_gathered_a_line_each():
    with pytest.raises(ConfigError) as info:
        check("train", _train("trainer.max_steps=-5", "model.embedding_dim=0", "batching.bptt=0", "+optim.lrr=1"))
    lines = str(info.value).splitlines()
    assert lines[0] == "4 problems in the train config, one a line:"
    assert len(lines) == 5 and all(line.startswith("  - ") for line in lines[1:])
    for fragment in ("trainer.max_steps=-5", "model.embedding_dim=0", "batching.bptt=0", "optim.lrr"):
        assert sum(fragment in line for line in lines[1:]) == 1, lines


def test_a_lone_problem_keeps_its_type():
    """``LookupError`` for an unknown cell stays a ``LookupError`` (the API's callers catch it)."""
    with pytest.raises(LookupError, match="Available cells"):
        check("train", _train("model.cell.name=nosuchcell"))


def test_a_refused_target_stops_the_pass_before_anything_is_imported():
    with pytest.raises(ValueError, match="is refused") as info:
        check("train", _train("optim._target_=os.system", "trainer.max_steps=-5"))
    assert "max_steps" not in str(info.value)


def test_generate_checks(tmp_path):
    bad = tmp_path / "p.txt"
    bad.write_bytes(b"one\ntwo \xff\n")
    with pytest.raises(ConfigError) as info:
        check("generate", _compose("generate", "run=r", f"prompts_file={bad}", f"output_file={tmp_path}",
                                   "num_samples=0"))
    text = str(info.value)
    assert text.startswith("3 problems in the generate config")
    assert f"prompts_file={bad} is not valid UTF-8: line 2, byte offset 8 (invalid start byte)" in text
    assert f"output_file={tmp_path} is a directory" in text and "num_samples=0 is not valid: it must be >= 1" in text
    with pytest.raises(FileNotFoundError, match="no such file"):
        check("generate", _compose("generate", "run=r", f"prompts_file={tmp_path / 'none.txt'}"))


def test_evaluate_export_serve_checks(tmp_path):
    with pytest.raises(ConfigError, match="2 problems in the evaluate config"):
        check("evaluate", _compose("evaluate", "run=r", "batch_size=0", "bptt=-1"))
    with pytest.raises(ConfigError) as info:
        check("export", _compose("export", "run=r", "format=tflite", f"out={tmp_path}"))
    assert "format=tflite is not an export format" in str(info.value) and f"out={tmp_path} is a directory" in str(info.value)
    with pytest.raises(ConfigError, match="port=70000 is not valid"):
        check("serve", _compose("serve", "run=r", "port=70000"))
    check("export", _compose("export", "run=r"))
    check("plot", _compose("plot", "run=r"))
    check("plugins", None)  # no config: nothing to check


def test_api_train_runs_the_check_pass_before_making_the_run_directory(tmp_path):
    from lstm_pipeline.api import train

    with pytest.raises(ConfigError, match="2 problems in the train config") as info:
        train(["data=text", f"data.path={tmp_path / 'x.txt'}", "trainer.max_steps=-5", "optim.lr=abc"],
              run_dir=tmp_path / "run")
    assert "optim.lr='abc'" in str(info.value) and not (tmp_path / "run").exists()


# -- degenerate settings (issue 25, case 7) -------------------------------------------------------
@pytest.mark.parametrize("overrides,expected", [
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is not valid: it must be >= 0"),
    (["trainer.gradient_clip_val=-0.5"], "trainer.gradient_clip_val=-0.5 is not valid"),
    # the temperature is the exported model's default decoding: checked even when no sample is printed
    (["sample.temperature=-1", "sample.max_new_tokens=0"], "sample.temperature=-1.0 is not valid: it must be > 0"),
    (["sample.temperature=0", "sample.max_new_tokens=0"], "sample.temperature=0.0 is not valid"),
    # the same kind: negative values lightning.Trainer takes without a word
    (["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1 is not valid: it must be >= 0"),
    (["trainer.check_val_every_n_epoch=-1"], "trainer.check_val_every_n_epoch=-1 is not valid: it must be a positive"),
])
def test_a_setting_is_checked_whether_or_not_it_is_used(overrides, expected):
    with pytest.raises(ConfigError) as info:
        check("train", _train(*overrides))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_clipping_off_is_zero_or_null():
    check("train", _train("trainer.gradient_clip_val=0"))
    check("train", _train("trainer.gradient_clip_val=null"))


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "uint8"])
def test_weights_that_are_not_floating_point_are_refused_at_load(tmp_path, dtype):
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from lstm_pipeline.config.checks import check_model_dir
    from lstm_pipeline.models.lm import RecurrentLM

    settings = {"cell": {"name": "lstm"}, "embedding_dim": 4, "hidden_size": 8}
    model = RecurrentLM(12, **settings)
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 12, "model": settings}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    check_model_dir(tmp_path)  # float32: fine
    tensors = load_file(tmp_path / "model.safetensors")
    name = sorted(tensors)[1]
    tensors[name] = tensors[name].to(getattr(torch, dtype))
    save_file(tensors, tmp_path / "model.safetensors")
    short = {"int64": "I64", "int32": "I32", "bool": "BOOL", "uint8": "U8"}[dtype]
    with pytest.raises(ConfigError, match=rf"model.safetensors is damaged \(tensor '{name}' has dtype {short}, "
                                          rf"not a floating-point type"):
        check_model_dir(tmp_path)
