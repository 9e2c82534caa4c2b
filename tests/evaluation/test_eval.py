"""Evaluation: the log-prob dump, dynamic evaluation, the neural cache, generation metrics."""
import math
import random

import numpy as np
import pytest
import torch

from lstm_pipeline.evaluation.cache import cache_evaluate
from lstm_pipeline.evaluation.dynamic import dynamic_evaluate
from lstm_pipeline.evaluation.generation_metrics import bleu, distinct_n, generation_report, repetition_rate, self_bleu
from lstm_pipeline.evaluation.scoring import evaluate_ids
from lstm_pipeline.models.lm import RecurrentLM

V = 20


def tiny_model(seed=0, cell="lstm", **model):
    torch.manual_seed(seed)
    model = {"num_layers": 1, **model}
    return RecurrentLM(V, {"name": cell}, embedding_dim=16, hidden_size=32, **model).eval()


def repetitive_ids(period=40, repeats=15, seed=0):
    rng = random.Random(seed)
    block = [rng.randrange(V) for _ in range(period)]
    return np.array(block * repeats, dtype=np.int64)


def test_logprob_dump_is_in_text_order_and_matches_one_full_pass():
    model = tiny_model()
    ids = np.random.default_rng(0).integers(0, V, 301)
    m = evaluate_ids(model, ids, batch_size=3, bptt=7, return_logprobs=True)
    assert sorted(m["positions"].tolist()) == list(range(1, 301))
    assert math.isclose(-m["logprobs"].astype(np.float64).sum() / m["tokens"], m["loss"], rel_tol=1e-6)
    # batch 1 carries the state over the whole text: equal to one forward pass over it
    one = evaluate_ids(model, ids, batch_size=1, bptt=7, return_logprobs=True)
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids[None, :-1]))
    ref = torch.log_softmax(logits[0], -1).gather(-1, torch.tensor(ids[1:, None])).squeeze(-1)
    assert one["positions"].tolist() == list(range(1, 301))
    np.testing.assert_allclose(one["logprobs"], ref.numpy(), atol=1e-5)


def test_cache_with_zero_weight_is_the_plain_evaluation():
    model, ids = tiny_model(), repetitive_ids()
    base = evaluate_ids(model, ids, batch_size=2, bptt=16)
    c = cache_evaluate(model, ids, batch_size=2, bptt=16, size=50, theta=0.3, lam=0.0)
    assert math.isclose(c["loss"], base["loss"], rel_tol=1e-5)


@pytest.mark.parametrize("layout", [{}, {"num_layers": 2, "dropout_hidden": 0.2, "tie_weights": True}])
def test_cache_matches_a_step_by_step_reference(layout):
    """The vectorised window computation equals the definition applied one token at a time; also
    for a layerwise model (one cell per layer) tied through a projection (hidden 32, embedding 16)."""
    model, ids = tiny_model(1, **layout), repetitive_ids(period=9, repeats=4)
    size, theta, lam = 7, 0.5, 0.3
    got = cache_evaluate(model, ids, batch_size=1, bptt=5, size=size, theta=theta, lam=lam)
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids[None, :-1]))
        p = logits[0].softmax(-1)  # (N, V)
        _, h, _ = model._features(torch.tensor(ids[None, :-1]), None)  # the top layer's output
    h = h[0]
    nll = 0.0
    for t in range(len(ids) - 1):
        lo = max(0, t - size)
        pt = p[t].clone()
        if t > 0:
            w = torch.softmax(theta * (h[lo:t] @ h[t]), 0)
            pc = torch.zeros(V).index_add_(0, torch.tensor(ids[lo + 1:t + 1]), w)
            pt = (1 - lam) * pt + lam * pc
        nll -= math.log(pt[ids[t + 1]])
    assert math.isclose(got["loss"], nll / (len(ids) - 1), rel_tol=1e-5)


def test_cache_improves_perplexity_on_repetitive_text():
    model, ids = tiny_model(), repetitive_ids()
    base = evaluate_ids(model, ids, batch_size=2, bptt=32)
    c = cache_evaluate(model, ids, batch_size=2, bptt=32, size=200, theta=20.0, lam=0.5)
    assert c["ppl"] < 0.5 * base["ppl"], (c["ppl"], base["ppl"])


def test_dynamic_eval_with_zero_step_is_the_plain_evaluation():
    model, ids = tiny_model(), repetitive_ids()
    base = evaluate_ids(model, ids, batch_size=2, bptt=16)
    d = dynamic_evaluate(model, ids, batch_size=2, bptt=16, lr=0.0, decay=0.0)
    assert math.isclose(d["loss"], base["loss"], rel_tol=1e-5)


def test_dynamic_eval_improves_perplexity_on_repetitive_text_and_leaves_the_model_alone():
    model, ids = tiny_model(), repetitive_ids()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base = evaluate_ids(model, ids, batch_size=1, bptt=20)
    d = dynamic_evaluate(model, ids, batch_size=1, bptt=20, lr=1e-2, decay=0.0)
    assert d["ppl"] < 0.5 * base["ppl"], (d["ppl"], base["ppl"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="dynamic_eval needs"):
        dynamic_evaluate(model, ids, lr=-1)


def test_distinct_and_repetition():
    a, b = [1, 2, 3, 1, 2, 3], [1, 2, 4]
    assert distinct_n([a, b], 1) == 4 / 9
    assert distinct_n([a, b], 2) == len({(1, 2), (2, 3), (3, 1), (2, 4)}) / 7
    assert repetition_rate([a], 2) == 1 - 3 / 5  # (1,2) and (2,3) repeat
    assert repetition_rate([a, b], 2) == ((1 - 3 / 5) + 0) / 2


def test_bleu_against_hand_computed_values():
    assert bleu([1, 2, 3, 4, 5], [[1, 2, 3, 4, 5]]) == 1.0
    assert bleu([7, 8, 9], [[1, 2, 3]]) == 0.0  # no unigram in common
    # hyp 1 2 3 5 vs ref 1 2 3 4 5 (max_n=2, no smoothing): p1 = 4/4, p2 = 2/3, BP = exp(1 - 5/4)
    got = bleu([1, 2, 3, 5], [[1, 2, 3, 4, 5]], max_n=2, smooth=False)
    assert math.isclose(got, math.exp(1 - 5 / 4) * math.sqrt(1 * 2 / 3))
    # clipping: "1 1 1 1" against "1 2": p1 = 1/4; longer than the reference: BP = 1
    assert math.isclose(bleu([1, 1, 1, 1], [[1, 2]], max_n=1), 0.25)
    # smoothing for n > 1: p2 = (0+1)/(2+1) with hyp 1 3 5 vs ref 1 2 3 4 5 (3 of 3 unigrams match)
    assert math.isclose(bleu([1, 3, 5], [[1, 2, 3, 4, 5]], max_n=2), math.exp(1 - 5 / 3) * math.sqrt(1 * 1 / 3))


def test_self_bleu():
    same = [[1, 2, 3, 4, 5, 6]] * 3
    assert self_bleu(same) == 1.0
    assert self_bleu([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]) == 0.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        self_bleu([[1, 2]])


def test_generation_report_own_perplexity_matches_a_forward_pass():
    from lstm_pipeline.registry import DECODERS

    model = tiny_model(2)
    prompt = [3, 4, 5]
    res = DECODERS.build({"name": "sample", "temperature": 0.7}).generate(
        model, [prompt] * 4, max_new_tokens=30, generator=torch.Generator().manual_seed(0))
    rep = generation_report(res.sequences, res.scores, max_n=4)
    nll = 0.0
    with torch.no_grad():
        for s in res.sequences:
            logits, _ = model(torch.tensor([prompt + s[:-1]]))
            lp = torch.log_softmax(logits[0, len(prompt) - 1:], -1)
            nll -= lp.gather(-1, torch.tensor(s)[:, None]).sum().item()
    assert math.isclose(rep["own_ppl"], math.exp(nll / 120), rel_tol=1e-4)
    assert rep["num_samples"] == 4 and rep["tokens"] == 120
    assert rep["distinct_1"] == distinct_n(res.sequences, 1)


def test_generation_quality_gives_no_own_perplexity_for_beam_scores():
    """Beam scores are length-penalised sums: no perplexity is made from them."""
    from lstm_pipeline.evaluation.scoring import generation_quality
    from lstm_pipeline.tokenization.base import TextTokenizer
    from lstm_pipeline.tokenization.char import CharTokenizer

    tok = TextTokenizer(CharTokenizer().train(["abcdefghijklmnopqrst"]))  # 20 symbols: the model's V
    cfg = {"num_samples": 2, "prompt": "abc", "seed": 0, "max_new_tokens": 6, "max_n": 2}
    beam = generation_quality(tiny_model(2), tok, {}, {**cfg, "decoding": {"name": "beam", "num_beams": 2,
                                                                          "num_return_sequences": 1}})
    assert math.isnan(beam["own_ppl"])
    greedy = generation_quality(tiny_model(2), tok, {}, {**cfg, "decoding": {"name": "greedy"}})
    assert greedy["own_ppl"] > 1
