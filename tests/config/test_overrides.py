"""lstm_pipeline.config.overrides: what a user typed -> the overrides Hydra gets -> the composed config."""
import os

import pytest
from omegaconf import OmegaConf

from lstm_pipeline.config import overrides as ov
from lstm_pipeline.registry import ConfigError


def test_text_keys_come_from_the_schemas():
    assert ov.text_keys("train") == {"sample.prompt": False, "chat_template": True}  # a Jinja template is text too
    assert ov.text_keys("generate") == {"prompt": False, "eos_token": True, "stop_strings": False}
    assert ov.text_keys("evaluate") == {"generation.prompt": False}
    assert ov.text_keys("plot") == {}


@pytest.mark.parametrize("typed,expected", [
    ("prompt=${now:%Y}", "prompt='\\${now:%Y}'"),
    ("prompt='${oc.env:HOME}'", "prompt='\\${oc.env:HOME}'"),        # quoted by the user: only escaped
    ("prompt='\\${oc.env:HOME}'", "prompt='\\${oc.env:HOME}'"),      # already escaped (a replayed record)
    ("prompt=Où est-il ? [enter]", "prompt='Où est-il ? [enter]'"),
    ("prompt=it's", "prompt='it\\'s'"),
    ("eos_token=null", "eos_token=null"),                              # null keeps its meaning where allowed
    ("prompt=null", "prompt='null'"),                                  # a prompt is text
    ("eos_token=<eos>", "eos_token='<eos>'"),
    ("stop_strings=[<eos>,\"\\n\",a b]", "stop_strings=['<eos>',\"\\n\",'a b']"),
    ("run=x", "run=x"),                                                # not text: as typed
    ("output_file=a=b.txt", "output_file='a=b.txt'"),                  # a string Hydra cannot read: text
])
def test_literal_text_for_generate(typed, expected):
    assert ov.literal_text("generate", [typed]) == [expected]


def test_component_text_settings_and_paths_for_train():
    typed = ["sample.prompt=${oc.env:HOME}", "data.document_separator=<|end|>", "checkpoint.filename=best-{step}",
             "ckpt_path=/r/checkpoints/best-step=45.ckpt", "model.hidden_size=${model.embedding_dim}"]
    assert ov.literal_text("train", typed) == [
        "sample.prompt='\\${oc.env:HOME}'", "data.document_separator='<|end|>'", "checkpoint.filename='best-{step}'",
        "ckpt_path='/r/checkpoints/best-step=45.ckpt'", "model.hidden_size=${model.embedding_dim}"]


def test_text_is_never_interpolated_and_reads_back_as_typed():
    cfg = ov.compose("generate", ov.prepare("generate", ["run=x", "prompt=${oc.env:HOME} ${now:%Y}",
                                                         "stop_strings=[${oc.env:HOME}]"]))
    assert cfg.prompt == "${oc.env:HOME} ${now:%Y}"
    assert list(cfg.stop_strings) == ["${oc.env:HOME}"]
    ov.resolve_keeping_text(cfg)  # resolved in place (as api.compose_train does): still the text
    assert cfg.prompt == "${oc.env:HOME} ${now:%Y}"
    assert OmegaConf.to_container(cfg, resolve=True)["prompt"] == "${oc.env:HOME} ${now:%Y}"
    assert os.environ["HOME"] not in cfg.prompt


def test_values_hydra_can_read_are_passed_on_as_typed():
    typed = ["trainer.max_steps=3", "data.path=a.txt", "model/cell=gru", "scheduler=null", "-m"]
    out = ov.prepare("train", typed)
    assert out[0] == "-m"
    assert "++trainer.max_steps=3" in out and "++data.path=a.txt" in out and "model/cell=gru" in out
    assert "scheduler=none" in out


def test_value_of_removes_hydras_quotes():
    assert ov.value_of("ckpt_path='/r/best-step=45.ckpt'") == "/r/best-step=45.ckpt"
    assert ov.value_of("ckpt_path=null") is None


def test_unreadable_override_is_one_line_naming_it():
    with pytest.raises(ConfigError, match=r"^x=<a b>: Hydra cannot read this value as typed"):
        ov.check_parse(["x=<a b>"])


@pytest.mark.parametrize("typed,expected", [
    ("model.hiden_size=3", "model.hiden_size: model does not take the setting 'hiden_size'. Did you mean 'hidden_size'?"),
    ("batching.bptx=3", "batching.bptx: batching does not take the setting 'bptx'. Did you mean 'bptt'?"),
    ("+batching.bptx=3", "batching.bptx: batching does not take the setting 'bptx'. Did you mean 'bptt'?"),
    ("trainer.max_stepz=3", "trainer.max_stepz: trainer does not take the setting 'max_stepz'. Did you mean 'max_steps'?"),
    ("sample.promt=x", "sample.promt: sample does not take the setting 'promt'. Did you mean 'prompt'?"),
])
def test_a_missing_key_gets_did_you_mean(typed, expected):
    with pytest.raises(ConfigError) as info:
        ov.compose("train", ov.prepare("train", [typed]))
    message = str(info.value)
    assert message.startswith(expected) and "\n" not in message and "To append" not in message


def test_a_missing_top_level_key_names_the_command():
    with pytest.raises(ConfigError, match="promt: generate does not take the setting 'promt'. Did you mean 'prompt'?"):
        ov.compose("generate", ov.prepare("generate", ["run=x", "promt=hi"]))


def test_a_group_choice_and_an_existing_key_with_plus_are_accepted():
    cfg = ov.compose("train", ov.prepare("train", ["experiment=none", "++batching.seed=3"]))
    assert cfg.batching.seed == 3


def test_compose_and_check_leaves_help_and_multirun_to_hydra():
    assert ov.compose_and_check("train", ["--cfg", "job", "model.hiden_size=3"]) is False  # Hydra reports it


def test_compose_and_check_reports_every_problem_before_hydra_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="2 problems in the train config") as info:
        ov.compose_and_check("train", ov.prepare("train", ["optim.lr=abc", "trainer.max_steps=-5"]))
    assert "optim.lr" in str(info.value) and "trainer.max_steps" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing made: no runs/, no run directory
    assert ov.compose_and_check("generate", ov.prepare("generate", ["run=x"])) is True
