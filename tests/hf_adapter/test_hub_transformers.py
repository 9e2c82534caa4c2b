"""The transformers adapter: AutoModelForCausalLM / generate / pipeline on our export directory,
with outputs equal to our own decoders."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

import lstm_pipeline.hf_adapter  # noqa: E402,F401  (registers with the Auto classes)
from lstm_pipeline.registry import DECODERS  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, pipeline  # noqa: E402

from test_hub import CFG, make_model_dir  # noqa: E402

PROMPTS = ["to be", "that is the q", "n"]


@pytest.fixture(scope="module", params=["lstm", "gru_tied"])
def exported(request, tmp_path_factory):
    cfg = CFG if request.param == "lstm" else {
        "cell": {"name": "gru"}, "embedding_dim": 16, "hidden_size": 16, "num_layers": 1, "tie_weights": True}
    model, d = make_model_dir(tmp_path_factory.mktemp("hf") / "model", cfg=cfg, seed=5)
    return model, d


def test_auto_classes_load_the_export_dir_with_identical_weights(exported):
    model, d = exported
    assert type(AutoConfig.from_pretrained(d)).__name__ == "LstmPipelineConfig"
    hf = AutoModelForCausalLM.from_pretrained(d).eval()
    assert type(hf).__name__ == "LstmPipelineForCausalLM"
    ours = model.state_dict()
    theirs = hf.lm.state_dict()
    assert set(ours) <= set(theirs)
    for k, v in ours.items():
        assert torch.equal(v, theirs[k]), k
    x = torch.tensor([[1, 2, 3, 4, 5]])
    out = hf(x, labels=x)
    ref_logits, _ = model(x)
    # same function; the fused GRU kernel may sum in another order once weights were reloaded
    assert torch.allclose(out.logits, ref_logits, atol=1e-6, rtol=0)
    ref_loss = torch.nn.functional.cross_entropy(ref_logits[0, :-1], x[0, 1:])
    assert torch.allclose(out.loss, ref_loss)


def test_transformers_greedy_equals_ours(exported):
    model, d = exported
    hf = AutoModelForCausalLM.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    greedy = DECODERS.build({"name": "greedy"})
    for prompt in PROMPTS:
        ids = tok(prompt)["input_ids"]
        theirs = hf.generate(torch.tensor([ids]), max_new_tokens=25, do_sample=False)[0, len(ids):].tolist()
        ours = greedy.generate(model, [ids], max_new_tokens=25).sequences[0]
        assert theirs == ours, prompt


def test_transformers_beam_equals_ours(exported):
    model, d = exported
    hf = AutoModelForCausalLM.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    for num_beams in (2, 4):
        beam = DECODERS.build({"name": "beam", "num_beams": num_beams})
        for prompt in PROMPTS:
            ids = tok(prompt)["input_ids"]
            theirs = hf.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, num_beams=num_beams,
                                 early_stopping=False, length_penalty=1.0)[0, len(ids):].tolist()
            ours = beam.generate(model, [ids], max_new_tokens=12).sequences[0]
            assert theirs == ours, (prompt, num_beams)


def test_text_generation_pipeline(exported):
    model, d = exported
    pipe = pipeline("text-generation", model=str(d))
    out = pipe("to be", max_new_tokens=20, do_sample=False)[0]["generated_text"]
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok("to be")["input_ids"]
    ours = DECODERS.build({"name": "greedy"}).generate(model, [ids], max_new_tokens=20).sequences[0]
    assert out == "to be" + tok.decode(ours, skip_special_tokens=True)  # the pipeline drops <unk>
    sampled = pipe("to be", max_new_tokens=20)[0]["generated_text"]  # generation_config.json: sampling
    assert sampled.startswith("to be") and len(sampled) > len("to be")


def test_padded_batches_hold_the_state_over_padding(exported):
    """A left-padded row gives the same logits as the row alone (the pad never enters the state)."""
    model, d = exported
    hf = AutoModelForCausalLM.from_pretrained(d).eval()
    with torch.no_grad():
        out = hf(torch.tensor([[1, 2], [0, 3]]), attention_mask=torch.tensor([[1, 1], [0, 1]])).logits
        torch.testing.assert_close(out[1, 1], model(torch.tensor([[3]]))[0][0, 0], atol=1e-5, rtol=0)
