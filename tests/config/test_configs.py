"""Compose every config file under conf/ and validate it against what it feeds."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lstm_pipeline.config.checks import check
from lstm_pipeline.config.schema import _missing_keys, register_schemas

CONF = Path(__file__).resolve().parents[2] / "src" / "lstm_pipeline" / "conf"
TOP = {"train.yaml", "generate.yaml", "evaluate.yaml", "export.yaml", "plot.yaml", "push.yaml", "serve.yaml"}


def _compose(config_name: str, overrides=()):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=True)


def group_options():
    for f in sorted(CONF.rglob("*.yaml")):
        rel = f.relative_to(CONF)
        if str(rel) in TOP:
            continue
        yield str(rel.parent), rel.stem


@pytest.mark.parametrize("group,option", list(group_options()))
def test_every_group_option_composes_and_validates(group, option):
    if group == "decoding":
        cfg = _compose("generate", [f"decoding={option}", "run=x"])
        from lstm_pipeline.registry import DECODERS

        DECODERS.build(OmegaConf.to_container(cfg.decoding))
        return
    cfg = _compose("train", [f"{group}={option}"])
    cfg.run_dir = "/tmp/x"  # hydra:runtime is only set inside a real run
    for key in _missing_keys(cfg):  # what the option leaves to the user (data.path, ...): any value
        OmegaConf.update(cfg, key, "some.txt")
    import torch

    if group == "trainer" and option == "gpu" and not torch.cuda.is_available():  # the hardware is checked too
        with pytest.raises(ValueError, match="trainer.accelerator=gpu but this machine has no usable GPU"):
            check("train", cfg)
        return
    check("train", cfg)


def test_typo_in_job_key_is_rejected_naming_it():
    with pytest.raises(Exception, match="bptx"):
        _compose("train", ["batching.bptx=3"])


def test_typo_in_component_key_is_rejected_naming_it():
    cfg = _compose("train", ["+model.hiden_size=3"])
    cfg.run_dir = "/tmp/x"
    with pytest.raises(TypeError, match="hiden_size.*Did you mean 'hidden_size'"):
        check("train", cfg)
    cfg = _compose("train", ["+trainer.max_step=3"])
    cfg.run_dir = "/tmp/x"
    with pytest.raises(TypeError, match="max_step"):
        check("train", cfg)


def test_unknown_cell_lists_available():
    cfg = _compose("train", ["model.cell.name=lsmt"])
    cfg.run_dir = "/tmp/x"
    with pytest.raises(LookupError, match="Available cells: .*lstm"):
        check("train", cfg)


def test_seed_keras_preset():
    cfg = _compose("train", ["experiment=seed_keras"])
    assert cfg.model.hidden_size == 128 and cfg.model.num_layers == 2
    assert cfg.model.input_encoding == "one_hot" and cfg.model.cell.name == "lstm"
    assert cfg.optim._target_ == "torch.optim.Adam"


def test_wlm_medium_preset_drops_where_word_language_model_does():
    """pytorch/examples word_language_model: plain dropout 0.5 on the embeddings, between the two
    LSTM layers and on the output, each with a fresh mask per element."""
    from lstm_pipeline.models.lm import RecurrentLM

    cfg = _compose("train", ["experiment=wlm_medium"])
    model = RecurrentLM(50, **OmegaConf.to_container(cfg.model))
    assert (model.lock_in.p, model.lock_in.locked) == (0.5, False)
    assert model.layers[0].rnn.dropout == 0.5 and model.drop.p == 0.5
    assert model.lock_hidden.p == model.lock_out.p == 0.0 and model.head.weight is model.embedding.weight


def test_a_value_left_missing_by_a_preset_is_named():
    cfg = _compose("train", ["data=ptb"])  # ptb needs data.data_dir
    cfg.run_dir = "/tmp/x"
    with pytest.raises(ValueError, match=r"data\.data_dir must be set: add data\.data_dir=<value>"):
        check("train", cfg)


def test_xlstm_char_preset():
    """Issue 17: experiment=xlstm_char is an xLSTM block stack (mLSTM blocks, one sLSTM block) that
    builds into a model and validates."""
    cfg = _compose("train", ["experiment=xlstm_char"])
    cell = cfg.model.cell
    assert cell.name == "xlstm" and list(cell.slstm_at) == [1] and cfg.model.num_layers == 4
    assert cfg.model.embedding_dim == cfg.model.hidden_size  # the residual stream is the embedding width
    cfg.run_dir = "/tmp/x"
    check("train", cfg)
    from lstm_pipeline.cells.xlstm import MLSTMBlock, SLSTMBlock
    from lstm_pipeline.models.lm import RecurrentLM

    model = RecurrentLM(65, **OmegaConf.to_container(cfg.model, resolve=True))
    kinds = [type(b) for b in model.layers[0].blocks]
    assert kinds == [MLSTMBlock, SLSTMBlock, MLSTMBlock, MLSTMBlock]


def test_adaptive_softmax_settings_compose_with_their_defaults():
    """model.output / model.adaptive_*: defaults from RecurrentLM's signature, overridable without '+',
    and config.json's model block records the cutoffs the model was built with."""
    from lstm_pipeline.models.lm import RecurrentLM

    cfg = _compose("train")
    assert (cfg.model.output, cfg.model.adaptive_cutoffs) == ("full", None)
    assert (cfg.model.adaptive_div_value, cfg.model.adaptive_head_bias) == (4.0, False)
    cfg = _compose("train", ["model.output=adaptive", "model.adaptive_cutoffs=[10,30]", "model.adaptive_div_value=2",
                             "model.adaptive_head_bias=true"])
    cfg.run_dir = "/tmp/x"
    check("train", cfg)
    model = RecurrentLM(100, **OmegaConf.to_container(cfg.model))
    assert model.adaptive.cutoffs == [10, 30, 100] and model.adaptive.head.bias is not None
    assert model.adaptive.tail[0][0].out_features == model.adaptive.in_features // 2
    default = RecurrentLM(33278, **OmegaConf.to_container(_compose("train", ["model.output=adaptive"]).model))
    assert default.config["adaptive_cutoffs"] == [1997, 9983]  # scaled to the vocabulary, recorded resolved
