"""The layout x consumer matrix: every model layout, trained a few steps and exported, gives the same
function through every consumer of the model as ``RecurrentLM.forward`` on the same tokens.

A new layout is one entry in ``LAYOUTS``; a new consumer is one function in ``CONSUMERS``. Tolerances:
1e-5 (absolute, on logits) for float consumers; the int8 step (``quantize=int8``) is held to a
stated tolerance: log-probabilities within 0.05 nats of float's, on these tiny models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lstm_pipeline.generation.pretrained import from_pretrained
from lstm_pipeline.artifacts.model_dir import load_pretrained, save_pretrained
from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.registry import DECODERS
from lstm_pipeline.tokenization.base import TextTokenizer
from lstm_pipeline.tokenization.char import CharTokenizer

TEXT = "to be or not to be, that is the question: whether 'tis nobler in the mind\n" * 3
ATOL = 1e-5
INT8_NATS = 0.05


def _preset(name: str) -> dict:
    """The model block of a shipped preset, shrunk (widths 24/16; layers, tying, dropouts as shipped)."""
    from lstm_pipeline.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    tied_projection = model.get("tie_weights") and model.get("embedding_dim") != model.get("hidden_size")
    model["hidden_size"] = 24
    model["embedding_dim"] = 16 if tied_projection else 24
    return model


LAYOUTS = {
    "fused_lstm": {"cell": {"name": "lstm"}, "embedding_dim": 12, "hidden_size": 24, "num_layers": 2},
    "fused_gru": {"cell": {"name": "gru"}, "embedding_dim": 12, "hidden_size": 24, "num_layers": 2},
    "custom_cell": {"cell": {"name": "layernorm_lstm"}, "embedding_dim": 12, "hidden_size": 24, "num_layers": 2},
    "one_cell_per_layer": {"cell": {"name": "lstm"}, "embedding_dim": 12, "hidden_size": 24, "num_layers": 2,
                           "dropout_hidden": 0.1},
    "tied_equal": {"cell": {"name": "lstm"}, "embedding_dim": 24, "hidden_size": 24, "num_layers": 2,
                   "tie_weights": True},
    "tied_projection": {"cell": {"name": "lstm"}, "embedding_dim": 16, "hidden_size": 24, "num_layers": 2,
                        "tie_weights": True},
    "proj_size": {"cell": {"name": "lstm", "proj_size": 10}, "embedding_dim": 12, "hidden_size": 24,
                  "num_layers": 2},
    "one_hot": {"cell": {"name": "gru"}, "input_encoding": "one_hot", "hidden_size": 24, "num_layers": 2},
    # xLSTM (issue 17): the matrix memory (heads x d x d) and the sLSTM block's states are state tensors like any
    # other; chunk_size 8 puts several chunks (and a ragged last one) in the 30-token windows
    "slstm": {"cell": {"name": "slstm", "num_heads": 2}, "embedding_dim": 12, "hidden_size": 24, "num_layers": 2},
    "mlstm": {"cell": {"name": "mlstm", "num_heads": 2, "chunk_size": 8}, "embedding_dim": 12, "hidden_size": 24,
              "num_layers": 2},
    "xlstm_blocks": {"cell": {"name": "xlstm", "slstm_at": [1], "num_heads": 2, "chunk_size": 8}, "embedding_dim": 12,
                     "hidden_size": 24, "num_layers": 3},
    # the adaptive softmax (clusters in the text's frequency order, set as training sets it): "logits" are log-probabilities
    "adaptive": {"cell": {"name": "lstm"}, "embedding_dim": 12, "hidden_size": 24, "num_layers": 2,
                 "output": "adaptive", "adaptive_cutoffs": [4, 12], "adaptive_head_bias": True},
    **{f"preset_{p}": p for p in ("seed_keras", "char_rnn", "wlm_medium", "awd_lstm_ptb", "awd_lstm_wt2",
                                  "xlstm_char")},
}


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer(CharTokenizer().train([TEXT]))


_BUILT: dict[str, tuple] = {}


def built(layout: str, tokenizer, root: Path):
    """Train the layout a few steps (training mode: every dropout and weight drop active), export it."""
    if layout not in _BUILT:
        cfg = LAYOUTS[layout]
        cfg = _preset(cfg) if isinstance(cfg, str) else cfg
        torch.manual_seed(0)
        model = RecurrentLM(tokenizer.vocab_size, **cfg)
        ids = torch.tensor(tokenizer.encode(TEXT))
        if cfg.get("output") == "adaptive":
            model.set_frequency_order(torch.bincount(ids, minlength=tokenizer.vocab_size))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for i in range(4):
            x = ids[i * 20: i * 20 + 41].view(1, -1)
            feats, _, penalty = model.features_train(x[:, :-1])
            loss, _, _ = model.head_loss(feats, x[:, 1:])
            opt.zero_grad()
            (loss + penalty).backward()
            opt.step()
        model.eval()
        out = save_pretrained(model, cfg, tokenizer, root / layout / "model",
                              extra={"bos_token_id": tokenizer.token_to_id("\n")})
        _BUILT[layout] = (model, out)
    return _BUILT[layout]


def _tokens(tokenizer, n=30) -> torch.Tensor:
    return torch.tensor([tokenizer.encode(TEXT[5:5 + n]), tokenizer.encode(TEXT[40:40 + n])])  # (2, n)


# -- the consumers: each checks it agrees with RecurrentLM.forward ----------------------------------
def step_over_sequence(model, model_dir, tokens, ref):
    state = model.init_state(tokens.size(0))
    for t in range(tokens.size(1)):
        logits, state = model.step(tokens[:, t], state)
        torch.testing.assert_close(logits, ref[:, t], atol=ATOL, rtol=0)


def prefill(model, model_dir, tokens, ref):
    logits, state = model.prefill(tokens[:, :17])
    torch.testing.assert_close(logits, ref[:, 16], atol=ATOL, rtol=0)
    logits, _ = model.step(tokens[:, 17], state)
    torch.testing.assert_close(logits, ref[:, 17], atol=ATOL, rtol=0)


def _run_exported(fmt, model, model_dir, tokens, quantize=False):
    from lstm_pipeline.artifacts.export import export_step

    path = export_step(model, model_dir.parent / "export" / f"step{'.int8' if quantize else ''}.{fmt}", fmt,
                       quantize=quantize)
    state = [s.numpy() for s in model.init_state(tokens.size(0))]
    out = []
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for t in range(tokens.size(1)):
            logits, *state = sess.run(None, {"token": tokens[:, t].numpy(),
                                             **{f"state_{i}": s for i, s in enumerate(state)}})
            out.append(torch.from_numpy(logits))
    else:
        ts = torch.jit.load(str(path))
        st = tuple(torch.from_numpy(s) for s in state)
        for t in range(tokens.size(1)):
            logits, *st = ts(tokens[:, t], *st)
            out.append(logits)
    return torch.stack(out, 1)  # (B, T, V)


def torchscript(model, model_dir, tokens, ref):
    torch.testing.assert_close(_run_exported("torchscript", model, model_dir, tokens), ref, atol=ATOL, rtol=0)


def onnx(model, model_dir, tokens, ref):
    torch.testing.assert_close(_run_exported("onnx", model, model_dir, tokens), ref, atol=ATOL, rtol=0)


def int8(model, model_dir, tokens, ref):
    got = _run_exported("torchscript", model, model_dir, tokens, quantize=True).log_softmax(-1)
    assert (got - ref.log_softmax(-1)).abs().max() < INT8_NATS


def int8_generation(model, model_dir, tokens, ref):
    """``generate quantize=int8`` / ``from_pretrained(quantize="int8")``: the same int8 rewrite, in eager steps."""
    q = from_pretrained(model_dir, quantize="int8").model
    state = q.init_state(tokens.size(0))
    for t in range(tokens.size(1)):
        logits, state = q.step(tokens[:, t], state)
        assert (logits.log_softmax(-1) - ref[:, t].log_softmax(-1)).abs().max() < INT8_NATS


def from_pretrained_forward(model, model_dir, tokens, ref):
    lm = from_pretrained(model_dir)
    logits, _ = lm(tokens)
    torch.testing.assert_close(logits, ref, atol=ATOL, rtol=0)


def _hf(model_dir):
    pytest.importorskip("transformers")
    import lstm_pipeline.hf_adapter  # noqa: F401
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def transformers_logits(model, model_dir, tokens, ref):
    hf = _hf(model_dir)
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ref, atol=ATOL, rtol=0)
        # a prompt, then one token at a time through the cache (generate's path)
        out = hf(tokens[:, :10], use_cache=True)
        logits = hf(tokens[:, 10:11], cache=out.cache).logits[:, 0]
    torch.testing.assert_close(logits, ref[:, 10], atol=ATOL, rtol=0)


def transformers_greedy_and_beam(model, model_dir, tokens, ref):
    hf = _hf(model_dir)
    ids = tokens[0, :8].tolist()
    theirs = hf.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False)[0, len(ids):].tolist()
    assert theirs == DECODERS.build({"name": "greedy"}).generate(model, [ids], max_new_tokens=10).sequences[0]
    theirs = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, num_beams=3,
                         early_stopping=False, length_penalty=1.0)[0, len(ids):].tolist()
    ours = DECODERS.build({"name": "beam", "num_beams": 3}).generate(model, [ids], max_new_tokens=8).sequences[0]
    assert theirs == ours


def evaluate(model, model_dir, tokens, ref):
    from lstm_pipeline.evaluation.scoring import evaluate_ids

    loaded, _, _ = load_pretrained(model_dir)
    ids = np.asarray(tokens[0].tolist())
    report = evaluate_ids(loaded, ids, batch_size=1, bptt=7)  # carried state across 4+ windows
    direct = torch.nn.functional.cross_entropy(ref[0, :-1], tokens[0, 1:]).item()
    assert report["loss"] == pytest.approx(direct, abs=1e-5)


def echo_logprobs(model, model_dir, tokens, ref):
    """``serve``'s ``echo`` with ``logprobs``: each prompt token's log-probability (the first has none)
    and its top entries, read in windows shorter than the prompt (the state carried across them)."""
    from lstm_pipeline.serve.sampling import prompt_logprobs

    loaded, _, _ = load_pretrained(model_dir)
    ids = tokens[0].tolist()
    with torch.no_grad():
        got = prompt_logprobs(loaded, ids, top_k=2, name=str, chunk=7)
    want = ref[0].log_softmax(-1)  # (T, V)
    assert [t for t, _, _ in got] == ids and got[0][1:] == (None, None)
    chosen = torch.tensor([lp for _, lp, _ in got[1:]])
    torch.testing.assert_close(chosen, want[:-1].gather(1, tokens[0, 1:, None])[:, 0], atol=ATOL, rtol=0)
    top = want[0].topk(2)
    assert got[1][2] == pytest.approx({str(i): v for v, i in zip(top.values.tolist(), top.indices.tolist())}, abs=ATOL)


CONSUMERS = {f.__name__: f for f in (step_over_sequence, prefill, torchscript, onnx, int8, int8_generation,
                                     from_pretrained_forward,
                                     transformers_logits, transformers_greedy_and_beam, evaluate, echo_logprobs)}


@pytest.mark.parametrize("consumer", list(CONSUMERS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_consumer_agrees_with_forward(layout, consumer, tokenizer, tmp_path_factory):
    model, model_dir = built(layout, tokenizer, tmp_path_factory.getbasetemp() / "matrix")
    tokens = _tokens(tokenizer)
    with torch.no_grad():
        ref, _ = model(tokens)  # (B, T, V)
    CONSUMERS[consumer](model, model_dir, tokens, ref)


def test_presets_are_what_they_claim():
    """The shipped presets cover the layouts the matrix names (so the matrix tests them)."""
    wt2, ptb = _preset("awd_lstm_wt2"), _preset("awd_lstm_ptb")
    for awd in (wt2, ptb):
        assert awd["tie_weights"] and awd["dropout_hidden"] > 0 and awd["embedding_dim"] != awd["hidden_size"]
    assert _preset("seed_keras")["input_encoding"] == "one_hot"
    assert json.dumps(LAYOUTS)  # every layout is plain data (what config.json records)
