"""The continuous-batching engine of ``lstm-pipeline serve`` driven step by step, in process, over
a real trained model: rows join and leave between steps, a cancelled row leaves at the next step,
and each request's tokens are the ones ``generate`` gives it alone."""
import pytest
import torch

from lstm_pipeline.generation.strategies import Greedy, Nucleus, Sample, StepDecoding
from lstm_pipeline.artifacts.model_dir import load_pretrained
from lstm_pipeline.serve.batcher import Engine, Group


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return load_pretrained(tiny_run)


def collect(store):
    def emit(group, events):
        for e in events:
            store.setdefault(group.id, {}).setdefault(e.index, []).append(e)
    return emit


def run_until_idle(engine, limit=10_000):
    with torch.inference_mode():
        for _ in range(limit):
            engine._admit()
            if not engine._rows:
                return
            engine._step()
    raise AssertionError("the engine did not drain")


def test_rows_join_mid_stream_and_match_generate(loaded):
    model, tok, config = loaded
    ids = tok.encode("ROMEO:")
    out: dict = {}
    eng = Engine(model, tok, max_batch=8, bos_token_id=config.get("bos_token_id", 0))
    a = Group([ids], Nucleus(top_p=0.9), 30, emit=collect(out), seed=1)
    b = Group([ids, tok.encode("JULIET:")], Sample(temperature=0.7), 20, emit=collect(out), seed=2)
    eng.submit(a)
    with torch.inference_mode():
        eng._admit()
        for _ in range(5):  # a runs alone for 5 steps, then b joins
            eng._step()
    eng.submit(b)
    run_until_idle(eng)
    for g, dec, n in ((a, Nucleus(top_p=0.9), 30), (b, Sample(temperature=0.7), 20)):
        want = dec.generate(model, g.prompts, max_new_tokens=n, generator=torch.Generator().manual_seed(g.seed))
        got = [[e.token_id for e in out[g.id][r]] for r in range(g.rows)]
        assert got == want.sequences
        assert all(out[g.id][r][-1].finish_reason == "length" for r in range(g.rows))
    assert eng.active_rows == 0 and eng._state is None  # every state freed


def test_cancel_leaves_at_the_next_step(loaded):
    model, tok, config = loaded
    out: dict = {}
    eng = Engine(model, tok, max_batch=8)
    keep = Group([tok.encode("A")], Greedy(), 50, emit=collect(out))
    gone = Group([tok.encode("B"), tok.encode("C")], Greedy(), 50, emit=collect(out))
    eng.submit(keep)
    eng.submit(gone)
    with torch.inference_mode():
        eng._admit()
        eng._step()
        assert eng.active_rows == 3
        eng.cancel(gone)
        eng._step()
    assert eng.active_rows == 1
    assert all(out[gone.id][r][-1].finish_reason == "cancelled" for r in range(2))
    state_rows = {s.size(d) for s, d in zip(eng._state, model.state_batch_dims(eng._state))}
    assert state_rows == {1}  # the cancelled rows' states are gone from the batch


def test_plugin_strategy_state_is_per_request(loaded):
    """A strategy with its own ``select`` that keeps state across steps (as Mirostat does) gets one
    copy per request, so two requests in one batch do not share it."""
    model, tok, _ = loaded

    class Counting(StepDecoding):
        def __init__(self):
            self.calls = 0
            self.settings = {}

        def select(self, scores, generator):
            self.calls += 1
            return scores.argmax(-1)

    shared = Counting()
    out: dict = {}
    eng = Engine(model, tok, max_batch=8)
    g1 = Group([tok.encode("A")], shared, 7, emit=collect(out))
    g2 = Group([tok.encode("B")], shared, 7, emit=collect(out))
    eng.submit(g1)
    eng.submit(g2)
    run_until_idle(eng)
    assert shared.calls == 0  # the request's copies were used, never the shared instance
    assert len(out[g1.id][0]) == len(out[g2.id][0]) == 7


def test_stop_string_is_cut_and_eos_stops(loaded):
    model, tok, config = loaded
    out: dict = {}
    eng = Engine(model, tok, max_batch=4)
    g = Group([tok.encode("ROMEO:")], Sample(), 80, emit=collect(out), seed=3)
    eng.submit(g)
    run_until_idle(eng)
    text = "".join(e.text for e in out[g.id][0])
    stop = next(ch for ch in text[2:] if ch.isalpha())
    out2: dict = {}
    g2 = Group([tok.encode("ROMEO:")], Sample(), 80, emit=collect(out2), seed=3, stop=[stop])
    eng.submit(g2)
    run_until_idle(eng)
    events = out2[g2.id][0]
    assert "".join(e.text for e in events) == text[: text.index(stop)]
    assert events[-1].finish_reason == "stop"
