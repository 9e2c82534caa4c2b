"""model.init: each preset starts from its reference's initialisation (models/init.py).

The wlm_medium preset fell 17% behind pytorch/examples' word_language_model by epoch 4 because its
tied embedding started from PyTorch's N(0, 1) instead of the reference's U(-0.1, 0.1)."""
from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.models.lm import RecurrentLM

VOCAB = 300


def preset_config(preset: str):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        return compose("train", overrides=[f"experiment={preset}"])


def preset_model(preset: str, **override) -> RecurrentLM:
    cfg = preset_config(preset)
    model_cfg = {**OmegaConf.to_container(cfg.model, resolve=True), **override}
    torch.manual_seed(0)
    return RecurrentLM(VOCAB, **model_cfg)


def uniform_ok(t: torch.Tensor, a: float) -> None:
    """t looks drawn from U(-a, a): bounded by a, standard deviation a / sqrt(3) within 5%."""
    assert t.abs().max() <= a + 1e-7
    assert abs(t.std().item() - a / math.sqrt(3)) < 0.05 * a / math.sqrt(3)


def recurrent(model, kind):
    return [(p, c.hidden_size) for c in model.layers for n, p in c.named_parameters()
            if n.rsplit(".", 1)[-1].startswith(kind)]


@pytest.mark.parametrize("preset", ["wlm_medium", "awd_lstm_ptb", "awd_lstm_wt2"])
def test_word_presets_start_from_uniform_tied_embeddings(preset):
    """word_language_model / awd-lstm-lm init_weights: embedding = tied output U(-0.1, 0.1), bias 0;
    the recurrent weights keep PyTorch's U(-1/sqrt(H), 1/sqrt(H))."""
    model = preset_model(preset)
    assert model.config["init"] in ("word_language_model", "awd_lstm")
    assert model.head.weight is model.embedding.weight
    uniform_ok(model.embedding.weight, 0.1)
    assert torch.count_nonzero(model.head.bias) == 0
    for w, hidden in recurrent(model, "weight_hh"):
        uniform_ok(w, 1 / math.sqrt(hidden))


def test_char_rnn_preset_is_uniform_008_with_forget_bias_one():
    model = preset_model("char_rnn")
    for name, p in model.named_parameters():
        if "bias_ih" not in name:
            uniform_ok(p, 0.08)
    for b, hidden in recurrent(model, "bias_ih"):
        assert torch.all(b[hidden:2 * hidden] == 1.0)
        uniform_ok(torch.cat([b[:hidden], b[2 * hidden:]]), 0.08)


def test_seed_keras_preset_has_keras_layer_defaults():
    model = preset_model("seed_keras")
    for w, hidden in recurrent(model, "weight_hh"):  # orthogonal: (4H, H) with orthonormal columns
        assert torch.allclose(w.T @ w, torch.eye(hidden), atol=1e-4)
    for w, hidden in recurrent(model, "weight_ih"):  # glorot_uniform
        uniform_ok(w, math.sqrt(6 / (w.size(0) + w.size(1))))
    for kind in ("bias_ih", "bias_hh"):
        for b, hidden in recurrent(model, kind):
            forget = 1.0 if kind == "bias_ih" else 0.0
            assert torch.all(b[hidden:2 * hidden] == forget)
            assert torch.count_nonzero(torch.cat([b[:hidden], b[2 * hidden:]])) == 0
    uniform_ok(model.head.weight, math.sqrt(6 / (model.head.weight.size(0) + model.head.weight.size(1))))
    assert torch.count_nonzero(model.head.bias) == 0


def test_torch_default_is_unchanged():
    """The default (model.init=torch) keeps PyTorch's module defaults: a tied embedding is N(0, 1)."""
    model = RecurrentLM(VOCAB, embedding_dim=256, hidden_size=256, tie_weights=True)
    assert model.config["init"] == "torch"
    assert abs(model.embedding.weight.std().item() - 1.0) < 0.05


def test_init_applies_to_per_layer_and_reference_cells():
    """Per-layer cells (dropout_hidden) and the reference cells get the same scheme."""
    model = preset_model("char_rnn", cell={"name": "lstm_cell"}, dropout_hidden=0.1)
    assert len(model.layers) == 2
    for b, hidden in recurrent(model, "bias_ih"):
        assert torch.all(b[hidden:2 * hidden] == 1.0)


def test_unknown_scheme_is_one_line_naming_the_setting():
    with pytest.raises(ValueError, match=r"model\.init must be one of torch, word_language_model, awd_lstm"):
        RecurrentLM(VOCAB, init="xavier")


def test_training_settings_follow_the_references():
    """word_language_model: lr / 4 whenever validation is not below the best (no relative threshold);
    char-rnn: gradient elements clamped to +-5 on the loss summed over its 50 steps = +-0.1 on our mean;
    AWD-LSTM: jittered BPTT; Keras: no clipping, Adam epsilon 1e-7."""
    wlm = preset_config("wlm_medium")
    assert wlm.scheduler.factor == 0.25 and wlm.scheduler.patience == 0 and wlm.scheduler.threshold == 0.0
    char = preset_config("char_rnn")
    assert char.trainer.gradient_clip_algorithm == "value"
    assert char.trainer.gradient_clip_val == pytest.approx(5.0 / char.batching.bptt)
    assert char.optim.eps == pytest.approx(1e-8 / char.batching.bptt)  # RMSprop's epsilon, scaled alike
    for preset in ("awd_lstm_ptb", "awd_lstm_wt2"):
        assert preset_config(preset).batching.variable_bptt is True
    keras = preset_config("seed_keras")
    assert keras.trainer.gradient_clip_val is None


@pytest.mark.parametrize("preset", ["awd_lstm_ptb", "awd_lstm_wt2"])
def test_awd_presets_tie_as_awd_lstm_does(preset):
    """awd-lstm-lm makes the last layer as wide as the embeddings and ties it to the output layer
    directly (no projection): 1150, 1150, 400."""
    model = preset_model(preset)
    assert [c.hidden_size for c in model.layers] == [1150, 1150, 400]
    assert model.proj is None and model.head.weight is model.embedding.weight
    x = torch.randint(0, VOCAB, (2, 3))
    logits, state = model.eval()(x)
    assert logits.shape == (2, 3, VOCAB)
    step_logits, _ = model.step(x[:, -1], state)
    torch.testing.assert_close(step_logits, model(x[:, -1:], state)[0][:, 0], rtol=1e-4, atol=1e-4)


def test_last_layer_size_needs_one_cell_per_layer():
    with pytest.raises(ValueError, match=r"model\.last_layer_size needs one cell per layer, which model\.dropout_hidden > 0"):
        RecurrentLM(VOCAB, num_layers=2, last_layer_size=16)
    assert [c.hidden_size for c in RecurrentLM(VOCAB, num_layers=1, hidden_size=32, last_layer_size=16).layers] == [16]
