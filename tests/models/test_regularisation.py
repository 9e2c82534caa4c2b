"""Each regulariser is active in training, off in evaluation, and computes what it claims."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lstm_pipeline.models.dropout import LockedDropout, dropout, embedding_dropout
from lstm_pipeline.models.lm import RecurrentLM

V = 23
CELL = {"name": "lstm", "proj_size": 0}


def make(**kw):
    torch.manual_seed(0)
    base = dict(embedding_dim=8, hidden_size=12, num_layers=2, dropout=0.0)
    return RecurrentLM(V, CELL, **{**base, **kw})


def tokens(B=3, T=7):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))


SWITCHES = [dict(dropout_embedding=0.3), dict(dropout_input=0.3), dict(dropout_hidden=0.3),
            dict(dropout_output=0.3), dict(weight_drop=0.3), dict(dropout=0.3),
            dict(dropout_input=0.3, locked_dropout=False)]


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda d: next(iter(d)))
def test_switch_active_in_training_off_in_eval(switch):
    model = make(**switch)
    x = tokens()
    # evaluation: identical to the same weights with the switch off
    off = copy.deepcopy(model)
    off.dropout_embedding = off.weight_drop = 0.0
    for m in off.modules():
        if hasattr(m, "p") and isinstance(m.p, float):
            m.p = 0.0
    for cell in off._cells():
        cell.rnn.dropout = 0.0
    model.eval(), off.eval()
    ref, _ = off(x)
    out, _ = model(x)
    assert torch.equal(out, ref)
    # training: random, and different from evaluation
    model.train()
    torch.manual_seed(1)
    a, _ = model(x)
    torch.manual_seed(2)
    b, _ = model(x)
    assert not torch.allclose(a, ref) and not torch.allclose(a, b)
    torch.manual_seed(1)
    assert torch.equal(model(x)[0], a)  # ... and reproducible from the seed


def test_locked_dropout_mask_is_shared_over_time():
    drop = LockedDropout(0.5).train()
    y = drop(torch.ones(4, 9, 16))
    assert torch.equal(y, y[:, :1].expand_as(y))  # same mask at every step
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1-p)
    assert torch.equal(drop.eval()(y), y)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LockedDropout(1.0)


def test_unlocked_dropout_draws_a_mask_per_element():
    drop = LockedDropout(0.5, locked=False).train()
    y = drop(torch.ones(4, 9, 16))
    assert not torch.equal(y, y[:, :1].expand_as(y))  # the mask changes over time
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(y), y)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.65])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_keeps_each_element_with_probability_1_minus_p(p, dtype):
    x = torch.randn(1000, 1000, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, p)
    kept = y != 0
    assert abs(kept.double().mean().item() - (1 - p)) < 0.003  # 1e6 draws: 5 standard deviations
    assert torch.allclose(y[kept], x[kept] / (1 - p))  # the kept ones scaled by 1/(1-p)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, kept.to(dtype) / (1 - p))  # the gradient is the mask
    # independent draws: the masks of two halves agree only by chance
    assert abs((kept[:500] == kept[500:]).double().mean().item() - (p * p + (1 - p) ** 2)) < 0.005
    torch.manual_seed(0)
    assert torch.equal(dropout(x, p), y)  # reproducible from the seed
    assert dropout(x, p, training=False) is x and dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout(x, 1.0)


def test_embedding_dropout_drops_whole_words():
    emb = nn.Embedding(5, 6)
    x = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4] * 4])
    torch.manual_seed(3)
    y = embedding_dropout(emb, x, 0.5, training=True)  # (1, 40, 6)
    for t in range(5):
        occurrences = y[0, t::5]
        assert torch.equal(occurrences, occurrences[:1].expand_as(occurrences))  # same word, same fate
    dropped = (y[0, :5].abs().sum(-1) == 0)
    assert dropped.any() and not dropped.all()
    kept = ~dropped
    assert torch.allclose(y[0, :5][kept], emb.weight[kept] * 2.0)
    assert torch.equal(embedding_dropout(emb, x, 0.5, training=False), emb(x))


def test_weight_drop_runs_the_fused_kernel_on_dropped_weights():
    model = make(weight_drop=0.4).train()
    x = tokens()
    torch.manual_seed(5)
    out, (h, c) = model(x)
    # the same masks, drawn in the same order, applied by hand to a plain nn.LSTM
    rnn = model.layers[0].rnn
    torch.manual_seed(5)
    dropped = {n: dropout(getattr(rnn, n), 0.4) for n in ("weight_hh_l0", "weight_hh_l1")}
    ref = copy.deepcopy(rnn)
    with torch.no_grad():
        for n, w in dropped.items():
            getattr(ref, n).copy_(w)
    emb = model.embedding(x)
    y, (h2, c2) = ref(emb)
    assert torch.allclose(out, model.head(y), atol=1e-6) and torch.allclose(h, h2, atol=1e-6)
    assert (dropped["weight_hh_l0"] == 0).float().mean() > 0.2  # a real mask
    # gradients reach the raw weight through the mask; the input-to-hidden weights are not dropped
    out.sum().backward()
    g = rnn.weight_hh_l0.grad
    assert g is not None and torch.all(g[dropped["weight_hh_l0"] == 0] == 0) and g.abs().sum() > 0


def test_weight_drop_in_layerwise_mode_and_functional_call_leaves_module_intact():
    model = make(weight_drop=0.5, dropout_hidden=0.2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(tokens())[0].sum().backward()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is not None for n, p in model.named_parameters() if "weight_hh" in n)


def test_ar_tar_penalty_matches_definition_and_is_off_in_eval():
    model = make(ar_alpha=2.0, tar_beta=1.0, dropout_output=0.25).train()
    x = tokens()
    torch.manual_seed(7)
    _, _, penalty = model.features_train(x)
    torch.manual_seed(7)
    raw, y, _ = model._features(x, None)
    expected = 2.0 * y.pow(2).mean() + 1.0 * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    assert torch.allclose(penalty, expected) and penalty > 0
    penalty.backward()  # differentiable
    assert model.embedding.weight.grad.abs().sum() > 0
    model.eval()
    assert model.features_train(x)[2].item() == 0.0


def test_no_penalty_when_off():
    model = make().train()
    assert model.features_train(tokens())[2].item() == 0.0


def test_bad_probabilities_and_combinations_are_clear_errors():
    with pytest.raises(ValueError, match="model.weight_drop"):
        make(weight_drop=1.5)
    with pytest.raises(ValueError, match="dropout_embedding"):
        make(input_encoding="one_hot", dropout_embedding=0.1)
    with pytest.raises(ValueError, match="ar_alpha"):
        make(ar_alpha=-1.0)
