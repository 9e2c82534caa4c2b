"""RecurrentLM structure: tied weights (with a projection when sizes differ), layerwise stacks."""
import pytest
import torch

from lstm_pipeline.models.lm import RecurrentLM

V = 19


def tokens(B=3, T=10):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))


def test_tied_same_size_shares_the_matrix():
    m = RecurrentLM(V, {"name": "lstm"}, embedding_dim=8, hidden_size=8, tie_weights=True)
    assert m.head.weight is m.embedding.weight and m.proj is None


def test_tied_different_size_adds_projection():
    m = RecurrentLM(V, {"name": "lstm"}, embedding_dim=6, hidden_size=10, tie_weights=True)
    assert m.head.weight is m.embedding.weight and m.proj.weight.shape == (6, 10)
    logits, _ = m(tokens())
    assert logits.shape == (3, 10, V)
    logits.sum().backward()
    assert m.embedding.weight.grad is not None


def test_tied_with_proj_size_needs_no_extra_layer():
    m = RecurrentLM(V, {"name": "lstm", "proj_size": 6}, embedding_dim=6, hidden_size=10, tie_weights=True)
    assert m.proj is None and m.head.weight is m.embedding.weight


def test_tie_needs_embedding_input():
    with pytest.raises(ValueError, match="input_encoding=embedding"):
        RecurrentLM(V, {"name": "lstm"}, hidden_size=V, tie_weights=True, input_encoding="one_hot")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layerwise_stack_carries_state_steps_and_reorders(cell):
    torch.manual_seed(0)
    m = RecurrentLM(V, {"name": cell}, embedding_dim=8, hidden_size=12, num_layers=3, dropout_hidden=0.3).eval()
    assert len(m.layers) == 3
    x = tokens()
    full, state = m(x)
    a, s = m(x[:, :4])
    b, s = m(x[:, 4:], s)
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-5)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(s, state))
    # step() one token at a time equals the windowed forward
    st = m.init_state(3)
    outs = []
    for t in range(x.size(1)):
        o, st = m.step(x[:, t], st)
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)
    # reorder_state picks batch rows of every layer's state
    idx = torch.tensor([2, 0])
    r = m.reorder_state(state, idx)
    one, _ = m(x[2:3])
    assert all(t.shape[1] == 2 for t in r)
    assert all(torch.equal(rt[:, 0], t[:, 2]) and torch.equal(rt[:, 1], t[:, 0]) for rt, t in zip(r, state))
    assert torch.allclose(one, full[2:3], atol=1e-5)


def test_layerwise_off_for_single_layer():
    m = RecurrentLM(V, {"name": "lstm"}, num_layers=1, dropout_hidden=0.5)
    assert len(m.layers) == 1


def test_awd_shaped_model_round_trips_through_safetensors(tmp_path):
    from safetensors.torch import load_model, save_model

    cfg = dict(embedding_dim=6, hidden_size=10, num_layers=3, tie_weights=True, dropout_hidden=0.2,
               weight_drop=0.5, dropout_embedding=0.1, dropout_input=0.2, dropout_output=0.2)
    torch.manual_seed(0)
    a = RecurrentLM(V, {"name": "lstm"}, **cfg).eval()
    save_model(a, str(tmp_path / "m.safetensors"))
    torch.manual_seed(1)
    b = RecurrentLM(V, {"name": "lstm"}, **cfg).eval()
    load_model(b, str(tmp_path / "m.safetensors"))
    assert b.head.weight is b.embedding.weight
    assert torch.equal(a(tokens())[0], b(tokens())[0])


def test_a_long_prompt_is_consumed_in_chunks_with_the_same_result(monkeypatch):
    """prefill runs a long prompt chunk by chunk (flat memory); the logits and state equal one pass."""
    torch.manual_seed(0)
    m = RecurrentLM(30, {"name": "lstm"}, embedding_dim=8, hidden_size=12).eval()
    tokens = torch.randint(0, 30, (2, 50))
    whole_logits, whole_state = m.prefill(tokens)
    monkeypatch.setattr(RecurrentLM, "PREFILL_CHUNK", 7)
    logits, state = m.prefill(tokens)
    torch.testing.assert_close(logits, whole_logits, atol=1e-6, rtol=0)
    for a, b in zip(state, whole_state):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
