"""Each logits processor equals its transformers counterpart on random logits and random histories."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (EpsilonLogitsWarper, EtaLogitsWarper, ForcedEOSTokenLogitsProcessor,  # noqa: E402
                          LogitsProcessorList, MinNewTokensLengthLogitsProcessor, MinPLogitsWarper,
                          NoBadWordsLogitsProcessor, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)

from lstm_pipeline.generation import processors as P  # noqa: E402
from lstm_pipeline.registry import LOGITS_PROCESSORS  # noqa: E402

V = 40


def random_case(seed, B=6, T=12, vocab=V):
    g = torch.Generator().manual_seed(seed)
    # logits from flat to very peaked, so the filters cut at many different places
    scale = torch.tensor([0.3, 1.0, 2.0, 4.0, 8.0, 16.0])[:B, None]
    logits = torch.randn(B, vocab, generator=g) * scale
    history = torch.randint(0, 8, (B, T), generator=g)  # few distinct ids: many repeats and n-grams
    return history, logits


def same(ours, ref, history, logits):
    a = ours(history.clone(), logits.clone())
    b = ref(history.clone(), logits.clone())
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different tokens filtered"
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


SEEDS = range(3)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [0.3, 0.7, 1.5])
def test_temperature(seed, t):
    same(P.Temperature(t), TemperatureLogitsWarper(t), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3, 17])
def test_top_k(seed, k):
    same(P.TopK(k), TopKLogitsWarper(k), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("p,keep", [(0.1, 1), (0.5, 1), (0.9, 1), (0.95, 3)])
def test_top_p(seed, p, keep):
    same(P.TopP(p, keep), TopPLogitsWarper(p, min_tokens_to_keep=keep), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mass,keep", [(0.2, 1), (0.6, 1), (0.9, 2)])
def test_typical(seed, mass, keep):
    same(P.Typical(mass, keep), TypicalLogitsWarper(mass, min_tokens_to_keep=keep), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("min_p,keep", [(0.05, 1), (0.3, 1), (0.9, 2)])
def test_min_p(seed, min_p, keep):
    same(P.MinP(min_p, keep), MinPLogitsWarper(min_p, min_tokens_to_keep=keep), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps,keep", [(1e-3, 1), (0.02, 1), (0.2, 2)])
def test_epsilon(seed, eps, keep):
    same(P.Epsilon(eps, keep), EpsilonLogitsWarper(eps, min_tokens_to_keep=keep), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eta,keep", [(1e-3, 1), (0.02, 1), (0.2, 2)])
def test_eta(seed, eta, keep):
    same(P.Eta(eta, keep), EtaLogitsWarper(eta, min_tokens_to_keep=keep), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("penalty", [0.7, 1.3, 2.0])
def test_repetition_penalty(seed, penalty):
    same(P.RepetitionPenalty(penalty), RepetitionPenaltyLogitsProcessor(penalty), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram(seed, n):
    same(P.NoRepeatNGram(n), NoRepeatNGramLogitsProcessor(n), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_bad_words(seed):
    bad = [[3], [5, 1], [2, 2, 7], [0, 4], [9]]
    ours = P.BadWords(bad)
    ours.setup(prompt_length=0, max_new_tokens=10, eos_token_id=9)  # a lone eos is never banned
    same(ours, NoBadWordsLogitsProcessor(bad, eos_token_id=9), *random_case(seed))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("prompt_len,min_new", [(4, 3), (4, 8), (10, 2)])
def test_min_new_tokens(seed, prompt_len, min_new):
    ours = P.MinNewTokens(min_new)
    ours.setup(prompt_length=prompt_len, max_new_tokens=20, eos_token_id=5)
    ref = MinNewTokensLengthLogitsProcessor(prompt_len, min_new, eos_token_id=5)
    same(ours, ref, *random_case(seed))


@pytest.mark.parametrize("T", [10, 11, 12])
def test_forced_end(T):
    ours = P.ForcedEnd(True)
    ours.setup(prompt_length=4, max_new_tokens=9, eos_token_id=5)  # the 9th new token is at length 12
    same(ours, ForcedEOSTokenLogitsProcessor(4 + 9, eos_token_id=5), *random_case(0, T=T))


def test_frequency_and_presence_penalties_follow_their_formula():
    history, logits = random_case(3)
    proc = P.FrequencyPresencePenalty(0.5, 0.25)
    proc.setup(prompt_length=4, max_new_tokens=20, eos_token_id=None)
    out = proc(history, logits)
    expected = logits.clone()
    for b in range(history.size(0)):
        for tok in history[b, 4:].tolist():
            expected[b, tok] -= 0.5
        for tok in set(history[b, 4:].tolist()):
            expected[b, tok] -= 0.25
    torch.testing.assert_close(out, expected)


def test_left_padding_is_ignored():
    """Ragged prompts are left-padded with id V: a padded row gives what the unpadded row gives."""
    history, logits = random_case(1, B=1)
    padded = torch.cat([torch.full((1, 5), V), history], 1)
    for proc in [P.RepetitionPenalty(1.5), P.NoRepeatNGram(2), P.NoRepeatNGram(3), P.BadWords([[4, 2], [7]])]:
        torch.testing.assert_close(proc(padded, logits), proc(history, logits))


def test_the_fixed_order_matches_transformers_order():
    """A full stack built from decoding settings equals transformers' processors applied in the same
    order (constraints first, then temperature and the filters)."""
    history, logits = random_case(4)
    settings = {"repetition_penalty": 1.2, "no_repeat_ngram_size": 2, "bad_words_ids": [[1, 2]],
                "temperature": 0.7, "top_k": 20, "top_p": 0.9, "typical_p": 0.95, "min_p": 0.02,
                "epsilon": 1e-3, "eta": 1e-3}
    ours = P.build_processors(settings)
    assert [type(p).__name__ for p in ours] == ["RepetitionPenalty", "NoRepeatNGram", "BadWords", "Temperature",
                                                "TopK", "TopP", "Typical", "MinP", "Epsilon", "Eta"]
    ref = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.2), NoRepeatNGramLogitsProcessor(2),
                               NoBadWordsLogitsProcessor([[1, 2]]), TemperatureLogitsWarper(0.7),
                               TopKLogitsWarper(20), TopPLogitsWarper(0.9), TypicalLogitsWarper(0.95),
                               MinPLogitsWarper(0.02), EpsilonLogitsWarper(1e-3), EtaLogitsWarper(1e-3)])
    out = logits.clone()
    for p in ours:
        out = p(history, out)
    torch.testing.assert_close(out, ref(history.clone(), logits.clone()))


def test_every_processor_is_registered():
    assert set(P.PROCESSOR_ORDER) <= set(LOGITS_PROCESSORS.names())


@pytest.mark.parametrize("cls,kwargs,match", [
    (P.TopP, {"top_p": 0.0}, "top_p must be in"), (P.TopP, {"top_p": 1.5}, "top_p must be in"),
    (P.Temperature, {"temperature": 0}, "temperature must be > 0"), (P.TopK, {"top_k": -1}, "top_k"),
    (P.Typical, {"typical_p": 0}, "typical_p"), (P.MinP, {"min_p": 2}, "min_p"), (P.Epsilon, {"epsilon": 1}, "epsilon"),
    (P.Eta, {"eta": -1}, "eta"), (P.RepetitionPenalty, {"penalty": 0}, "repetition_penalty"),
    (P.NoRepeatNGram, {"ngram_size": -2}, "no_repeat_ngram_size"), (P.BadWords, {"bad_words_ids": [[]]}, "bad_words_ids"),
])
def test_bad_settings_are_refused_naming_them(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_top_p_fast_path_on_a_large_vocabulary(seed, p):
    """On a large vocabulary only the boundary band is sorted (fast path); rows where one band holds
    most tokens fall back to the full sort; both equal transformers."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1, 2, 4, 6, 8, 12, 20, 40])[:, None]
    logits = torch.randn(8, 5000, generator=g) * scale
    history = torch.zeros(8, 0, dtype=torch.long)
    proc = P.TopP(p)
    assert proc._candidates_only(logits.clone()) is not None  # the fast path is taken
    same(proc, TopPLogitsWarper(p), history, logits)
    same(P.TopP(p, min_tokens_to_keep=3), TopPLogitsWarper(p, min_tokens_to_keep=3), history, logits)
    for spread in (0.01, 0.1):  # flat rows: the boundary band holds many tokens
        flat = torch.randn(4, 5000, generator=g) * spread
        same(proc, TopPLogitsWarper(p), history[:4], flat)
        same(P.TopP(p, min_tokens_to_keep=3), TopPLogitsWarper(p, min_tokens_to_keep=3), history[:4], flat)
    uniform = torch.randn(4, 5000, generator=g) * 1e-4  # one band holds every token
    assert proc._candidates_only(uniform.clone()) is None  # so the full sort runs
    same(proc, TopPLogitsWarper(p), history[:4], uniform)


def test_top_p_keeps_min_tokens_beyond_the_boundary_band():
    """A peaked row: the nucleus is one token, but min_tokens_to_keep reaches into lower bands."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 4000, generator=g)
    logits[:, 7] += 20.0  # ~0.999 of the mass on one token
    history = torch.zeros(6, 0, dtype=torch.long)
    for keep in (1, 2, 40):
        same(P.TopP(0.9, min_tokens_to_keep=keep), TopPLogitsWarper(0.9, min_tokens_to_keep=keep), history, logits)
    assert int(torch.isfinite(P.TopP(0.9, min_tokens_to_keep=40)(history, logits)).sum(-1).min()) == 40


def _mass_before(logits: torch.Tensor) -> torch.Tensor:
    """For each token, the float64 mass of the tokens more likely than it."""
    probs = logits.double().softmax(-1)
    srt, order = probs.sort(-1, descending=True)
    return torch.empty_like(probs).scatter_(-1, order, srt.cumsum(-1) - srt)


@pytest.mark.parametrize("rows", [1, 3, 8, 16])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_top_p_small_batch_and_band_paths_equal_transformers(rows, p):
    """Up to 8 rows take the top-k-first path (k grows until it covers top_p), more rows the band
    path; nuclei of a few tokens to thousands. Equal to transformers except for a token whose mass
    before it is within 1e-6 of top_p: there float32 rounding decides (transformers' own float32
    and float64 runs disagree there too)."""
    g = torch.Generator().manual_seed(rows)
    scale = torch.tensor([0.3, 1, 3, 8, 20])[torch.arange(rows) % 5][:, None]
    logits = torch.randn(rows, 6000, generator=g) * scale
    history = torch.zeros(rows, 0, dtype=torch.long)
    tie = (_mass_before(logits) - p).abs() < 1e-6
    for keep in (1, 5):
        proc, ref = P.TopP(p, min_tokens_to_keep=keep), TopPLogitsWarper(p, min_tokens_to_keep=keep)
        expected = torch.isinf(ref(history, logits.clone()))
        for _ in range(2):  # the second call starts from the k the first one needed
            out = proc(history, logits.clone())
            differ = torch.isinf(out) != expected
            assert not (differ & ~tie).any(), "different tokens filtered"
            assert int(differ.sum()) <= 1
            kept = ~torch.isinf(out)
            torch.testing.assert_close(out[kept], logits[kept])
