"""The sampling loop, stopping criteria and contrastive search on a tiny random model."""
import pytest
import torch
import torch.nn.functional as F

from lstm_pipeline.generation.contrastive import ContrastiveSearch
from lstm_pipeline.generation.strategies import Greedy, Nucleus, Sample, prefill, sample_from_logits
from lstm_pipeline.registry import DECODERS
from lstm_pipeline.tokenization.base import TextTokenizer
from lstm_pipeline.tokenization.char import CharTokenizer

TEXT = "abcdefgh ijklmnop\nqrstuvwxyz.,!?"


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer(CharTokenizer(special_tokens=["<eos>"]).train([TEXT]))


def tiny_lm(vocab, seed=0, sharp=4.0, cell="lstm", **model):
    from lstm_pipeline.models.lm import RecurrentLM

    torch.manual_seed(seed)
    m = RecurrentLM(vocab, {"name": cell}, embedding_dim=8, hidden_size=16, num_layers=2, **model).eval()
    with torch.no_grad():
        m.head.weight.mul_(sharp)
    return m


def manual_greedy(model, prompt, n):
    out = []
    with torch.no_grad():
        logits, state = model(torch.tensor([prompt]))
        nxt = int(logits[0, -1].argmax())
        for _ in range(n):
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state)
            nxt = int(logits[0, -1].argmax())
    return out


def test_greedy_is_argmax_of_the_fused_forward_and_batches_ragged_prompts():
    model = tiny_lm(20, cell="gru")
    prompts = [[1, 2, 3, 4, 5], [6], [7, 8]]
    r = Greedy().generate(model, prompts, max_new_tokens=15)
    assert r.sequences == [manual_greedy(model, p, 15) for p in prompts]
    # the score is the sum of the model's log-probs of the chosen tokens
    p = prompts[0]
    with torch.no_grad():
        logits, _ = model(torch.tensor([p + r.sequences[0]]))
    logp = logits[0, len(p) - 1:-1].log_softmax(-1).gather(1, torch.tensor(r.sequences[0])[:, None]).sum()
    assert r.scores[0] == pytest.approx(float(logp), abs=1e-4)


def test_empty_prompt_starts_from_the_start_of_text_state():
    model = tiny_lm(20)
    r = Greedy().generate(model, [[]], max_new_tokens=6, bos_token_id=3)
    assert r.sequences[0] == manual_greedy(model, [3], 6)


def test_sampling_draws_from_the_processed_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0, 0.5]]).repeat(40000, 1)
    draws = sample_from_logits(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).float() / draws.numel()
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.01, rtol=0)


def test_sampling_with_given_uniforms_equals_drawing_them():
    """u= (each row's uniform number, drawn by the caller) gives the tokens the generator gives: a
    batch of rows from different requests draws each request's numbers from its own generator."""
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1))
    want = sample_from_logits(logits, torch.Generator().manual_seed(7))
    u = torch.rand(6, 1, generator=torch.Generator().manual_seed(7))
    assert sample_from_logits(logits, u=u).tolist() == want.tolist()
    # rows 0-2 from one generator, rows 3-5 from another: each half as it samples alone
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
    mixed = sample_from_logits(logits, u=torch.cat([torch.rand(3, 1, generator=g1), torch.rand(3, 1, generator=g2)]))
    assert mixed[:3].tolist() == sample_from_logits(logits[:3], torch.Generator().manual_seed(3)).tolist()
    assert mixed[3:].tolist() == sample_from_logits(logits[3:], torch.Generator().manual_seed(4)).tolist()
    with pytest.raises(ValueError, match=r"u must have shape \(6, 1\)"):
        sample_from_logits(logits, u=torch.rand(6))


def test_nucleus_never_leaves_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]])).repeat(5000, 1)
    draws = Nucleus(top_p=0.75).processors()[0](torch.zeros(5000, 0, dtype=torch.long), logits)
    got = set(sample_from_logits(draws, torch.Generator().manual_seed(0)).tolist())
    assert got == {0, 1}


def test_seeded_sampling_is_reproducible_and_top_k_1_is_greedy():
    model = tiny_lm(20)
    prompts = [[1, 2], [3, 4, 5]]
    a = Sample(temperature=0.9).generate(model, prompts, 20, generator=torch.Generator().manual_seed(5))
    b = Sample(temperature=0.9).generate(model, prompts, 20, generator=torch.Generator().manual_seed(5))
    c = Sample(temperature=0.9).generate(model, prompts, 20, generator=torch.Generator().manual_seed(6))
    assert a == b and a.sequences != c.sequences
    g = Greedy().generate(model, prompts, 20)
    assert DECODERS.build({"name": "top_k", "top_k": 1}).generate(model, prompts, 20).sequences == g.sequences
    assert DECODERS.build({"name": "min_p", "min_p": 1.0}).generate(model, prompts, 20).sequences == g.sequences


@pytest.mark.parametrize("name", ["greedy", "sample", "top_k", "nucleus", "typical", "min_p", "epsilon", "eta",
                                  "contrastive"])
def test_every_step_strategy_batches_ragged_prompts_like_one_at_a_time(name):
    """Each row of a batch of ragged prompts equals that prompt decoded alone. Sampling draws
    differ between a batch and a single row, so the sampling strategies run at temperature 1e-4,
    where every draw is the most likely token that survives the strategy's filter."""
    model = tiny_lm(20, seed=2)
    dec = DECODERS.build({"name": name} if name in ("greedy", "contrastive") else {"name": name, "temperature": 1e-4})
    prompts = [[1, 2, 3], [4], [5, 6]]
    together = dec.generate(model, prompts, 10, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in together.sequences] == [10, 10, 10]
    alone = [dec.generate(model, [p], 10, generator=torch.Generator().manual_seed(1)).sequences[0] for p in prompts]
    assert together.sequences == alone


def test_eos_min_new_tokens_and_forced_end(tok):
    eos = tok.token_to_id("<eos>")
    model = tiny_lm(tok.vocab_size, seed=1)
    with torch.no_grad():
        model.head.bias[eos] += 6.0  # eos becomes very likely
    prompts = [tok.encode("abc"), tok.encode("x")]
    r = Greedy().generate(model, prompts, 12, eos_token_id=eos)
    assert all(s[-1] == eos and s.count(eos) == 1 for s in r.sequences)
    r = Greedy(min_new_tokens=5).generate(model, prompts, 12, eos_token_id=eos)
    assert all(len(s) == 6 and s[-1] == eos for s in r.sequences)  # eos first allowed as the 6th token
    with torch.no_grad():
        model.head.bias[eos] -= 20.0  # now eos never comes by itself
    r = Sample(forced_end=True).generate(model, prompts, 9, eos_token_id=eos, generator=torch.Generator().manual_seed(0))
    assert all(len(s) == 9 and s[-1] == eos and eos not in s[:-1] for s in r.sequences)


def test_stop_strings_are_found_across_token_boundaries(tok):
    model = tiny_lm(tok.vocab_size, seed=3)
    prompts = [tok.encode("ab"), tok.encode("k")]
    free = Greedy().generate(model, prompts, 30)
    texts = [tok.decode(s) for s in free.sequences]
    stop = texts[0][5:8]  # three characters = three tokens somewhere in row 0's output
    r = Greedy().generate(model, prompts, 30, tokenizer=tok, stop_strings=[stop])
    out0 = tok.decode(r.sequences[0])
    assert out0.endswith(stop) and stop not in out0[:-1] and texts[0].startswith(out0)
    if stop not in texts[1]:
        assert r.sequences[1] == free.sequences[1]  # rows without the stop string run to the budget


def test_max_time_stops_generation():
    model = tiny_lm(20)
    r = Sample().generate(model, [[1]], 100000, max_time=0.2, generator=torch.Generator().manual_seed(0))
    assert 0 < len(r.sequences[0]) < 100000


def test_repetition_constraints_hold_in_generated_text():
    model = tiny_lm(20, seed=4)
    r = Greedy(no_repeat_ngram_size=2).generate(model, [[1, 2, 3]], 15)
    full = [1, 2, 3] + r.sequences[0]
    bigrams = list(zip(full, full[1:]))
    assert len(bigrams) == len(set(bigrams))
    r = Greedy(bad_words_ids=[[6], [7, 8]]).generate(model, [[1, 2, 3]], 30)
    full = [1, 2, 3] + r.sequences[0]
    assert 6 not in r.sequences[0] and (7, 8) not in list(zip(full, full[1:]))


def naive_contrastive(model, prompt, n, k, alpha, window=0):
    """Contrastive search by its definition: one row, every candidate stepped on its own."""
    logits, state = prefill(model, [prompt], 0)
    ctx = [F.normalize(model.top_hidden(state), dim=-1)[0]]
    out = []
    for _ in range(n):
        probs = logits[0].softmax(-1)
        top_p, top = probs.topk(k)
        best, best_score = None, None
        for p, t in zip(top_p.tolist(), top.tolist()):
            lg, st = model.step(torch.tensor([t]), state)
            h = F.normalize(model.top_hidden(st), dim=-1)[0]
            score = (1 - alpha) * p - alpha * max(float(h @ c) for c in (ctx[-window:] if window else ctx))
            if best_score is None or score > best_score:
                best, best_score = (t, lg, st, h), score
        t, logits, state, h = best
        out.append(t)
        ctx.append(h)
    return out


def test_contrastive_search_matches_its_definition_and_alpha_0_is_greedy():
    model = tiny_lm(20, seed=6, sharp=1.5)
    prompts = [[1, 2, 3], [4, 5]]
    r = ContrastiveSearch(top_k=4, penalty_alpha=0.6).generate(model, prompts, 12)
    assert r.sequences == [naive_contrastive(model, p, 12, 4, 0.6) for p in prompts]
    assert r.sequences != Greedy().generate(model, prompts, 12).sequences  # the penalty changes the output
    assert ContrastiveSearch(top_k=4, penalty_alpha=0.0).generate(model, prompts, 12).sequences == \
        Greedy().generate(model, prompts, 12).sequences


@pytest.mark.parametrize("cfg,match", [
    ({"name": "nucleus", "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ({"name": "nucleus", "top_p": 0.0}, r"top_p must be in \(0, 1\]"),
    ({"name": "sample", "temperature": 0}, "temperature must be > 0.*decoding=greedy"),
    ({"name": "sample", "temprature": 0.5}, "temprature.*Did you mean 'temperature'"),
    ({"name": "greedy", "top_p": 0.5}, "greedy' does not take the setting 'top_p'"),
    ({"name": "contrastive", "penalty_alpha": 2}, "penalty_alpha"),
])
def test_bad_settings_name_the_setting(cfg, match):
    with pytest.raises(ValueError, match=match):
        DECODERS.build(cfg)


def test_layerwise_models_decode_like_fused_ones():
    """With dropout between layers each layer is its own cell (a longer state tuple): contrastive
    search and ragged prompts read the state through the model, not through one cell."""
    model = tiny_lm(20, seed=6, sharp=1.5, dropout_hidden=0.3)
    assert len(model.layers) > 1
    prompts = [[1, 2, 3], [4, 5]]
    r = ContrastiveSearch(top_k=4, penalty_alpha=0.6).generate(model, prompts, 8)
    assert r.sequences == [naive_contrastive(model, p, 8, 4, 0.6) for p in prompts]
    together = Greedy().generate(model, prompts, 8).sequences
    assert together == [Greedy().generate(model, [p], 8).sequences[0] for p in prompts]


def test_contrastive_context_window_looks_back_only_that_far():
    model = tiny_lm(20, seed=6, sharp=1.5)
    prompts = [[1, 2, 3], [4, 5]]
    r = ContrastiveSearch(top_k=4, penalty_alpha=0.6, context_window=2).generate(model, prompts, 12)
    assert r.sequences == [naive_contrastive(model, p, 12, 4, 0.6, window=2) for p in prompts]


def test_the_processors_built_to_check_the_settings_serve_the_first_generate_only():
    from lstm_pipeline.registry import DECODERS

    dec = DECODERS.build({"name": "sample", "temperature": 0.5, "top_k": 3})
    first, second = dec.processors(), dec.processors()
    assert [type(p) for p in first] == [type(p) for p in second] and len(first) == 2
    assert not set(map(id, first)) & set(map(id, second))  # each generate call gets its own
    dec = DECODERS.build({"name": "sample", "temperature": 0.5})
    dec.settings = {**dec.settings, "top_k": 3}  # changed after __init__: the built list is stale
    assert len(dec.processors()) == 2
