"""Special tokens end to end: the end-of-text token a model was trained with is recorded in the export,
generation (ours and transformers') stops there by default, an empty prompt starts from the state
after it, and no real text token (the newline) is ever declared as padding."""
import io
import json

import pytest
import torch

from lstm_pipeline.generation.generator import TextGenerator
from lstm_pipeline.generation.pretrained import from_pretrained
from lstm_pipeline.artifacts.model_dir import save_pretrained
from lstm_pipeline.models.lm import RecurrentLM
from lstm_pipeline.registry import TOKENIZERS
from lstm_pipeline.tokenization.base import TextTokenizer

TEXT = ["to be or not to be,\nthat is the question.", "whether 'tis nobler\nin the mind to suffer"] * 8
CFG = {"cell": {"name": "lstm"}, "embedding_dim": 8, "hidden_size": 16, "num_layers": 1}


def _tokenizer(name="char", eos="<eos>"):
    tk = TextTokenizer(TOKENIZERS.build({"name": name}).train(TEXT))
    if eos:
        tk.tk.add_special_tokens([eos])
    return tk


def _export(path, tk, eos="<eos>", eos_bias=0.0, seed=0):
    torch.manual_seed(seed)
    model = RecurrentLM(tk.vocab_size, **CFG).eval()
    if eos and eos_bias:
        with torch.no_grad():
            model.head.bias[tk.token_to_id(eos)] += eos_bias
    return model, save_pretrained(model, CFG, tk, path, extra={"eos_token": eos, "sample": {"prompt": "to"}},
                                  model_card=False)


def test_the_export_records_the_end_of_text_token(tmp_path):
    tk = _tokenizer()
    _, d = _export(tmp_path / "m", tk)
    eos = tk.token_to_id("<eos>")
    gen = json.loads((d / "generation_config.json").read_text())
    tok = json.loads((d / "tokenizer_config.json").read_text())
    config = json.loads((d / "config.json").read_text())
    assert gen["eos_token_id"] == eos and gen["pad_token_id"] == eos and gen["bos_token_id"] == eos
    assert tok["eos_token"] == "<eos>" and tok["pad_token"] == "<eos>" and tok["padding_side"] == "left"
    assert config["eos_token"] == "<eos>" and config["eos_token_id"] == eos and config["bos_token_id"] == eos


def test_without_an_end_of_text_token_no_text_token_pads(tmp_path):
    tk = _tokenizer(eos=None)
    _, d = _export(tmp_path / "m", tk, eos=None)
    gen = json.loads((d / "generation_config.json").read_text())
    tok = json.loads((d / "tokenizer_config.json").read_text())
    newline = tk.token_to_id("\n")
    assert gen["bos_token_id"] == newline  # an empty prompt starts after a newline (character model)
    assert gen["eos_token_id"] is None and gen["pad_token_id"] != newline
    assert tok.get("pad_token") in (None, tk.unk_token) and tok.get("pad_token") != "\n"


def test_generation_stops_at_the_models_end_of_text_token_by_default(tmp_path):
    tk = _tokenizer()
    _, d = _export(tmp_path / "m", tk, eos_bias=50.0)  # the model ends every text at once
    gen = TextGenerator.load(d)
    eos = tk.token_to_id("<eos>")
    (c,) = gen.generate("to be", decoding={"name": "greedy"}, max_new_tokens=20)
    assert c.tokens == [eos] and c.text == "" and c.finish_reason == "eos"
    (c,) = gen.generate("to be", decoding={"name": "greedy"}, max_new_tokens=20, eos_token="none")
    assert len(c.tokens) == 20 and c.finish_reason == "length"
    assert from_pretrained(d).generate("to be", decoding={"name": "greedy"}) == ""  # the Python API too
    out = io.StringIO()
    gen.generate("to be", decoding={"name": "greedy"}, max_new_tokens=20, stream=out)
    assert out.getvalue() == "to be\n"  # the end-of-text token is not printed


def test_cli_generate_stops_at_eos_and_prints_no_eos(tmp_path, capsys):
    from test_continuation import _generate

    tk = _tokenizer()
    _, d = _export(tmp_path / "m", tk, eos_bias=50.0)
    _generate(f"run={d}", "prompt=to be", "decoding=greedy", "max_new_tokens=10")
    assert capsys.readouterr().out == "to be\n"
    _generate(f"run={d}", "prompt=to be", "decoding=greedy", "max_new_tokens=3", "eos_token=none")
    assert capsys.readouterr().out == "to be<eos><eos><eos>\n"


def test_an_empty_prompt_starts_from_the_state_after_the_end_of_text_token(tmp_path):
    tk = _tokenizer()
    model, d = _export(tmp_path / "m", tk)
    eos = tk.token_to_id("<eos>")
    (c,) = TextGenerator.load(d).generate("", decoding={"name": "greedy"}, max_new_tokens=5, eos_token="none")
    expect, state = [], None
    token = torch.tensor([eos])
    for _ in range(5):
        logits, state = model.step(token, state)
        token = logits.argmax(-1)
        expect.append(int(token))
    assert c.tokens == expect


# -- transformers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    import lstm_pipeline.hf_adapter  # noqa: F401

    tk = _tokenizer()
    model, d = _export(tmp_path_factory.mktemp("hf") / "m", tk, eos_bias=-50.0, seed=3)  # never ends by itself
    return model, d, tk


def test_transformers_takes_newline_and_empty_prompts_and_batches(hf_dir):
    from transformers import pipeline

    model, d, tk = hf_dir
    pipe = pipeline("text-generation", model=str(d))
    greedy = dict(max_new_tokens=12, do_sample=False)
    # a newline in the prompt is text, not padding
    one = pipe("to be,\nthat", **greedy)[0]["generated_text"]
    ours = TextGenerator.load(d).generate("to be,\nthat", decoding={"name": "greedy"}, max_new_tokens=12)[0]
    assert one == "to be,\nthat" + ours.text
    assert pipe("", **greedy)[0]["generated_text"]  # an empty prompt generates
    prompts = ["to be", "whether 'tis nobler", "in"]
    batched = pipe(prompts, batch_size=2, **greedy)  # left-padded batches: the state holds still over padding
    single = [pipe(p, **greedy) for p in prompts]
    assert batched == single


def test_transformers_stops_at_the_end_of_text_token(tmp_path):
    pytest.importorskip("transformers")
    import lstm_pipeline.hf_adapter  # noqa: F401
    from transformers import AutoModelForCausalLM

    tk = _tokenizer()
    _, d = _export(tmp_path / "m", tk, eos_bias=50.0)
    hf = AutoModelForCausalLM.from_pretrained(d).eval()
    ids = torch.tensor([tk.encode("to be")])
    out = hf.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.size(1):].tolist()
    assert out == [tk.token_to_id("<eos>")]


def test_padded_logits_equal_unpadded(hf_dir):
    from transformers import AutoModelForCausalLM

    model, d, tk = hf_dir
    hf = AutoModelForCausalLM.from_pretrained(d).eval()
    a, b = tk.encode("to be or"), tk.encode("not")
    pad = tk.token_to_id("<eos>")
    ids = torch.tensor([a, [pad] * (len(a) - len(b)) + b])
    mask = torch.tensor([[1] * len(a), [0] * (len(a) - len(b)) + [1] * len(b)])
    with torch.no_grad():
        logits = hf(ids, attention_mask=mask).logits
        torch.testing.assert_close(logits[0], model(torch.tensor([a]))[0][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(logits[1, -len(b):], model(torch.tensor([b]))[0][0], atol=1e-5, rtol=0)


def test_word_level_pipeline_keeps_the_space_after_the_prompt(tmp_path):
    pytest.importorskip("transformers")
    import lstm_pipeline.hf_adapter  # noqa: F401
    from transformers import pipeline

    tk = TextTokenizer(TOKENIZERS.build({"name": "word"}).train(["the cat sat on the mat the dog ate"] * 5))
    _, d = _export(tmp_path / "m", tk, eos=None)
    text = pipeline("text-generation", model=str(d))("the cat", max_new_tokens=4, do_sample=False)[0]["generated_text"]
    ours = TextGenerator.load(d).generate("the cat", decoding={"name": "greedy"}, max_new_tokens=4)[0]
    assert ours.text.startswith(" ") and text == "the cat" + ours.text


def test_int8_generation_stays_within_tolerance_of_float(tmp_path):
    """quantize=int8 (generate / from_pretrained / TextGenerator): log-probabilities of each step within
    0.05 nats of float's; the CLI takes quantize=int8."""
    from test_continuation import _generate

    tk = _tokenizer()
    model, d = _export(tmp_path / "m", tk, eos_bias=-50.0)
    q = from_pretrained(d, quantize="int8").model
    tokens = torch.tensor(tk.encode("to be or not to be, that is"))
    sf = sq = None
    for t in tokens:
        lf, sf = model.step(t.view(1), sf)
        lq, sq = q.step(t.view(1), sq)
        assert (lf.log_softmax(-1) - lq.log_softmax(-1)).abs().max() < 0.05
    _generate(f"run={d}", "prompt=to be", "decoding=greedy", "max_new_tokens=5", "quantize=int8")
    with pytest.raises(ValueError, match="quantize must be one of none, int8"):
        TextGenerator.load(d, quantize="int4")


def test_a_model_whose_outputs_are_not_finite_is_an_error_not_garbage(tmp_path):
    """Finite weights can still give infinite logits (a damaged head): generation says so."""
    tk = _tokenizer()
    model, d = _export(tmp_path / "m", tk)
    with torch.no_grad():
        model.head.bias[3] = float("inf")
    with pytest.raises(ValueError, match="outputs are not finite"):
        TextGenerator(model, tk, {}).generate("to", decoding={"name": "greedy"}, max_new_tokens=3)
