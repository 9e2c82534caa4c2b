"""The default recipe (conf/experiment/default.yaml, issue 15): what `lstm-pipeline train` composes
with no overrides, and the ways back to the components' own defaults."""
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lstm_pipeline.config.schema import register_schemas



def _compose(*overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=list(overrides)), resolve=False)


def test_default_run_is_the_budgeted_recipe():
    cfg = _compose()
    assert cfg["budget"] == "2m" and cfg["trainer"]["max_steps"] == -1
    assert cfg["trainer"]["precision"] == "auto"
    assert cfg["optim"]["_target_"] == "torch.optim.AdamW"
    assert cfg["scheduler"]["_target_"].endswith("WarmupCosineTime")
    assert (cfg["model"]["hidden_size"], cfg["model"]["num_layers"], cfg["model"]["dropout"]) == (384, 2, 0.0)
    assert (cfg["batching"]["batch_size"], cfg["batching"]["bptt"]) == (32, 64)


def test_other_choices_replace_the_recipe_whole():
    plain = _compose("experiment=none")  # the components' own defaults
    assert plain["budget"] is None and plain["trainer"]["max_steps"] == 600
    assert plain["trainer"]["precision"] == "32-true" and plain["scheduler"] is None
    preset = _compose("experiment=char_rnn")
    assert preset["budget"] is None and preset["optim"]["_target_"] == "torch.optim.RMSprop"
    sgd = _compose("optim=sgd")  # the recipe's optimizer settings do not leak into another optimizer
    assert sgd["optim"]["lr"] == 20.0 and "weight_decay" not in sgd["optim"]


def test_null_on_the_command_line_means_none(tmp_path, cli_in_process):
    out = cli_in_process("train", "experiment=null", "scheduler=null", "--cfg", "job", cwd=tmp_path).stdout
    assert "max_steps: 600" in out and "scheduler: {}" in out and "budget: null" in out
