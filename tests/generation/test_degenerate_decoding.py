"""Decoding settings at their limits never print garbage (issue 25, cases 8 and 9).

* A temperature near 0 (1e-40, 1e-300) used to overflow ``logits / temperature`` to ``inf``, so the
  probabilities were NaN and every draw was the last vocabulary id ("zzzz..."). It now samples what
  greedy picks, in ``generate`` and in the serve engine; where the division does not overflow the
  processor still equals transformers' ``TemperatureLogitsWarper`` value for value.
* Beam search asked for more hypotheses than exist (a 4-token vocabulary, 8 beams, 8 returned)
  returned placeholder rows scored -1e9 that repeat earlier sequences (transformers does the same);
  it now refuses in one line and never returns a placeholder.
"""
import pytest
import torch

from lstm_pipeline.generation import processors as P
from lstm_pipeline.generation.beam import BIG, BeamSearch
from lstm_pipeline.generation.strategies import Greedy, Sample, sample_from_logits
from lstm_pipeline.models.lm import RecurrentLM

TINY = [1e-40, 1e-300, 5e-324]


def tiny_lm(vocab, seed=0):
    torch.manual_seed(seed)
    return RecurrentLM(vocab, {"name": "lstm"}, embedding_dim=8, hidden_size=16, num_layers=1).eval()


@pytest.mark.parametrize("t", TINY)
def test_a_temperature_near_zero_samples_what_greedy_picks(t):
    model = tiny_lm(30)
    prompts = [[1, 2], [3], [4, 5, 6]]
    greedy = Greedy().generate(model, prompts, max_new_tokens=25)
    for seed in range(3):
        got = Sample(temperature=t).generate(model, prompts, max_new_tokens=25,
                                             generator=torch.Generator().manual_seed(seed))
        assert got.sequences == greedy.sequences


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tiny_temperature_logits_are_finite_and_peak_at_the_argmax(dtype):
    logits = (torch.randn(5, 50, generator=torch.Generator().manual_seed(0)) * 3).to(dtype)
    logits[0, 7] = float("-inf")  # a token a constraint removed stays removed
    for t in [*TINY, 1e-4]:
        out = P.Temperature(t)(torch.empty(0, 0, dtype=torch.long), logits)
        assert not torch.isnan(out).any() and not torch.isposinf(out).any()
        assert torch.equal(out.float().argmax(-1), logits.float().argmax(-1))
        assert torch.isneginf(out[0, 7])


@pytest.mark.parametrize("t", [1e-3, 1e-20, 0.5])
def test_temperature_equals_transformers_where_its_division_is_finite(t):
    transformers = pytest.importorskip("transformers")
    logits = torch.randn(4, 40, generator=torch.Generator().manual_seed(1)) * 4
    hist = torch.zeros(4, 3, dtype=torch.long)
    ref = transformers.TemperatureLogitsWarper(t)(hist, logits.clone())
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(P.Temperature(t)(hist, logits.clone()), ref, rtol=1e-6, atol=0)


def test_transformers_overflows_where_we_give_greedy():
    """The reference point: transformers' warper turns a 1e-40 temperature into inf logits, whose
    softmax is NaN; ours gives the one-hot distribution of the argmax."""
    transformers = pytest.importorskip("transformers")
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    hist = torch.zeros(1, 1, dtype=torch.long)
    assert torch.isnan(torch.softmax(transformers.TemperatureLogitsWarper(1e-40)(hist, logits), -1)).all()
    probs = torch.softmax(P.Temperature(1e-40)(hist, logits), -1)
    assert probs.tolist() == [[0.0, 1.0, 0.0]]


def test_a_tiny_repetition_penalty_does_not_overflow():
    hist = torch.tensor([[1, 2]])
    logits = torch.tensor([[0.5, 2.0, 1.0, 3.0]])
    out = P.RepetitionPenalty(1e-40)(hist, logits)
    assert torch.isfinite(out).all()
    draws = {int(sample_from_logits(out, torch.Generator().manual_seed(s))) for s in range(20)}
    assert draws <= {1, 2}  # the seen positive tokens, infinitely favoured


def test_sampling_from_inf_logits_draws_among_them_not_the_last_id():
    logits = torch.tensor([[0.0, float("inf"), 1.0, 2.0], [0.0, 1.0, 5.0, -1.0]])
    for s in range(10):
        tok = sample_from_logits(logits, torch.Generator().manual_seed(s))
        assert int(tok[0]) == 1
    assert int(sample_from_logits(torch.tensor([[float("inf"), 0.0, 0.0, float("inf")]]),
                                  u=torch.tensor([[0.2]]))) == 0


def test_serve_engine_with_a_tiny_temperature_equals_greedy(tiny_run):
    from lstm_pipeline.artifacts.model_dir import load_pretrained
    from lstm_pipeline.serve.batcher import Engine, Group

    model, tok, config = load_pretrained(tiny_run)
    out: dict = {}

    def emit(group, events):
        for e in events:
            out.setdefault(group.id, {}).setdefault(e.index, []).append(e.token_id)

    eng = Engine(model, tok, max_batch=8, bos_token_id=config.get("bos_token_id", 0))
    prompts = [tok.encode("ROMEO:"), tok.encode("JULIET:")]
    cold, warm = Group(prompts, Sample(temperature=1e-40), 25, emit=emit, seed=3), \
        Group(prompts, Sample(temperature=0.8), 25, emit=emit, seed=4)
    eng.submit(cold)
    eng.submit(warm)  # rows of another temperature in the same batch
    with torch.inference_mode():
        for _ in range(1000):
            eng._admit()
            if not eng._rows:
                break
            eng._step()
    greedy = Greedy().generate(model, prompts, max_new_tokens=25)
    assert [out[cold.id][r] for r in range(2)] == greedy.sequences
    want = Sample(temperature=0.8).generate(model, prompts, max_new_tokens=25,
                                            generator=torch.Generator().manual_seed(4))
    assert [out[warm.id][r] for r in range(2)] == want.sequences


# -- beam search with more beams than hypotheses -------------------------------------------------
def test_more_return_sequences_than_hypotheses_is_refused_in_one_line():
    model = tiny_lm(4)
    with pytest.raises(ValueError, match=r"num_return_sequences=8, but prompt 0 has only 4 distinct hypotheses"):
        BeamSearch(num_beams=8, num_return_sequences=8).generate(model, [[1]], max_new_tokens=1)
    with pytest.raises(ValueError, match=r"only 1 distinct"):  # a filter leaves one continuation a step
        BeamSearch(num_beams=4, num_return_sequences=2, processors={"top_k": {"top_k": 1}}).generate(
            model, [[1]], max_new_tokens=3)


@pytest.mark.parametrize("n,eos", [(1, None), (2, None), (5, None), (3, 2), (6, 2)])
def test_more_beams_than_the_vocabulary_never_returns_a_placeholder(n, eos):
    """Where enough hypotheses exist (or few are asked for) every returned one is real, distinct, and
    the same as transformers' (which, with one new token, would return four -1e9 rows)."""
    model = tiny_lm(4)
    R = 8 if n > 1 else 4
    got = BeamSearch(num_beams=8, num_return_sequences=R).generate(model, [[1], [2, 3]], max_new_tokens=n,
                                                                  eos_token_id=eos)
    assert min(got.scores) > -BIG / 2
    for b in range(2):
        rows = got.sequences[b * R:(b + 1) * R]
        assert len({tuple(r) for r in rows}) == R
    pytest.importorskip("transformers")
    from test_decoding_beam import hf_beam

    ref_seqs, ref_scores = hf_beam(model, [[1]], max_new_tokens=n, eos_token_id=eos, num_beams=8,
                                   num_return_sequences=R)
    assert ref_scores[:R] == pytest.approx(got.scores[:R], abs=1e-5)
