"""Beam search equals transformers' own generate(num_beams=...) on our model; the variants."""
import pytest
import torch

from lstm_pipeline.generation.beam import BeamSample, BeamSearch, DiverseBeamSearch
from lstm_pipeline.generation.strategies import Greedy
from lstm_pipeline.models.lm import RecurrentLM

V, EOS = 12, 2


def tiny_lm(seed=0, cell="lstm", sharp=6.0, eos_bias=0.0):
    torch.manual_seed(seed)
    m = RecurrentLM(V, {"name": cell}, embedding_dim=8, hidden_size=16, num_layers=2).eval()
    with torch.no_grad():  # peakier, varied distributions, and an eos that is sometimes chosen
        m.head.weight.mul_(sharp)
        m.head.bias[EOS] += eos_bias
    return m


def hf_beam(model, prompts, **kw):
    pytest.importorskip("transformers")
    from hf_reference_adapter import RecurrentAdapter

    ids = torch.tensor(prompts)
    out = RecurrentAdapter(model).eval().generate(
        ids, attention_mask=torch.ones_like(ids), do_sample=False, use_cache=False, return_dict_in_generate=True,
        output_scores=True, pad_token_id=EOS if kw.get("eos_token_id") is not None else 0, **kw)
    seqs = []
    for row in out.sequences[:, ids.size(1):].tolist():
        if kw.get("eos_token_id") is not None and EOS in row:
            row = row[: row.index(EOS) + 1]
        seqs.append(row)
    return seqs, out.sequences_scores.tolist()


CASES = [  # (prompts, beam settings, max_new_tokens, eos bias)
    ([[1, 3, 4], [5, 6, 7], [0, 9, 9]], dict(num_beams=3, num_return_sequences=2), 8, 1.0),
    ([[4, 1], [3, 3]], dict(num_beams=4, length_penalty=0.0, num_return_sequences=4), 7, 2.0),
    ([[7, 8, 1, 2]], dict(num_beams=2, length_penalty=2.0, early_stopping=True), 10, 2.5),
    ([[6], [1], [10]], dict(num_beams=5, length_penalty=-0.5, early_stopping="never", num_return_sequences=3), 9, 1.5),
    ([[1, 2, 3], [4, 5, 6]], dict(num_beams=3, length_penalty=1.5, early_stopping="never"), 6, 3.0),
    ([[2, 9, 9]], dict(num_beams=4, num_return_sequences=2), 6, None),  # no eos: every beam runs to the budget
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_beam_search_equals_transformers(case):
    prompts, settings, n, bias = CASES[case]
    eos = None if bias is None else EOS
    model = tiny_lm(seed=case, eos_bias=bias or 0.0)
    ours = BeamSearch(**settings).generate(model, prompts, max_new_tokens=n, eos_token_id=eos)
    ref_seqs, ref_scores = hf_beam(model, prompts, max_new_tokens=n, eos_token_id=eos, **settings)
    assert ours.sequences == ref_seqs
    assert ours.scores == pytest.approx(ref_scores, abs=1e-5)
    if eos is not None and case < 5:  # the cases exercise finishing before the budget
        assert any(s[-1] == EOS and len(s) < n for s in ours.sequences)


def test_greedy_equals_one_beam():
    model = tiny_lm(3, eos_bias=1.0)
    prompts = [[1, 2, 3], [4, 4, 1]]
    g = Greedy().generate(model, prompts, max_new_tokens=12, eos_token_id=EOS)
    b = BeamSearch(num_beams=1, length_penalty=0.0).generate(model, prompts, max_new_tokens=12, eos_token_id=EOS)
    assert g.sequences == b.sequences
    assert g.scores == pytest.approx(b.scores, abs=1e-4)  # with length_penalty 0 the beam score is the sum


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batched_and_ragged_prompts_equal_one_at_a_time(cell):
    """Beams of many prompts (of different lengths) in one batch give what each prompt gives alone."""
    model = tiny_lm(5, cell=cell, eos_bias=1.0)
    prompts = [[1, 2, 3, 4], [5], [6, 7], []]
    beam = BeamSearch(num_beams=3, num_return_sequences=2)
    together = beam.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS)
    alone_seqs, alone_scores = [], []
    for p in prompts:
        r = beam.generate(model, [p], max_new_tokens=8, eos_token_id=EOS)
        alone_seqs += r.sequences
        alone_scores += r.scores
    assert together.sequences == alone_seqs
    assert together.scores == pytest.approx(alone_scores, abs=1e-5)


def test_beam_search_reorders_state_through_the_cell_contract(monkeypatch):
    model = tiny_lm(1)
    calls = []
    orig = model.reorder_state
    monkeypatch.setattr(model, "reorder_state", lambda s, i: calls.append(i.numel()) or orig(s, i))
    BeamSearch(num_beams=3).generate(model, [[1, 2], [3, 4]], max_new_tokens=5)
    assert calls and all(c == 2 * 3 for c in calls)  # one call per step for all rows: no per-hypothesis loop


def test_diverse_beam_search():
    model = tiny_lm(2, eos_bias=0.5)
    prompts = [[1, 2, 3], [4, 5, 6]]
    plain = BeamSearch(num_beams=4, num_return_sequences=4).generate(model, prompts, max_new_tokens=8, eos_token_id=EOS)
    one_group = DiverseBeamSearch(num_beams=4, num_beam_groups=1, num_return_sequences=4, diversity_penalty=3.0)
    assert one_group.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS).sequences == plain.sequences
    # without a penalty, 2 groups of 2 beams search the same way: the first token of each group agrees
    no_pen = DiverseBeamSearch(num_beams=4, num_beam_groups=2, diversity_penalty=0.0, num_return_sequences=4)
    r0 = no_pen.generate(model, [[1, 2, 3]], max_new_tokens=8)
    assert len(set(tuple(s) for s in r0.sequences)) <= 2
    div = DiverseBeamSearch(num_beams=4, num_beam_groups=2, diversity_penalty=5.0, num_return_sequences=4)
    r = div.generate(model, [[1, 2, 3]], max_new_tokens=8)
    assert len(set(tuple(s) for s in r.sequences)) == 4
    assert r.scores == sorted(r.scores, reverse=True)
    # a large penalty makes the second group start with a different token than the first
    assert len({s[0] for s in r.sequences}) >= 2


def test_beam_sample_is_reproducible_and_cold_beam_sample_is_beam_search():
    model = tiny_lm(4, eos_bias=1.0)
    prompts = [[1, 2, 3], [4, 5, 6]]
    bs = BeamSample(num_beams=3, num_return_sequences=2)
    a = bs.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS, generator=torch.Generator().manual_seed(1))
    b = bs.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS, generator=torch.Generator().manual_seed(1))
    assert a == b
    outs = {tuple(map(tuple, bs.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS,
                                         generator=torch.Generator().manual_seed(s)).sequences)) for s in range(6)}
    assert len(outs) > 1  # it does sample
    # at a very low temperature the Gumbel noise no longer matters: the beams are beam search's
    cold = BeamSample(num_beams=3, num_return_sequences=2, temperature=1e-3, length_penalty=0.0)
    ref = BeamSearch(num_beams=3, num_return_sequences=2, length_penalty=0.0)
    assert cold.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS,
                         generator=torch.Generator().manual_seed(0)).sequences == \
        ref.generate(model, prompts, max_new_tokens=8, eos_token_id=EOS).sequences


@pytest.mark.parametrize("settings,match", [
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences .3. must be between 1 and decoding.num_beams .2."),
    (dict(num_beams=0), "num_beams"), (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(num_beems=3), "num_beems.*Did you mean 'num_beams'"),
])
def test_bad_beam_settings(settings, match):
    with pytest.raises(ValueError, match=match):
        BeamSearch(**settings)
    with pytest.raises(ValueError, match="num_beam_groups"):
        DiverseBeamSearch(num_beams=4, num_beam_groups=3)
