"""The output layer's oneDNN products (models/linear.py) equal F.linear, forward and backward."""
import pytest
import torch

from lstm_pipeline.models.linear import linear, onednn_applies


@pytest.mark.parametrize("shape", [(3, 5, 16), (7, 16)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_equals_f_linear_with_gradients(shape, with_bias):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(40, 16, requires_grad=True)
    b = torch.randn(40, requires_grad=True) if with_bias else None
    params = [x, w] + ([b] if with_bias else [])
    assert onednn_applies(x, w)
    y = linear(x, w, b)
    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, params, g)
    y_ref = torch.nn.functional.linear(x, w, b)
    ref = torch.autograd.grad(y_ref, params, g)
    torch.testing.assert_close(y, y_ref)
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r)


def test_tied_weight_gets_both_gradients():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(30, 8)
    tokens = torch.randint(0, 30, (4, 6))
    for fn in (linear, torch.nn.functional.linear):
        emb.zero_grad()
        fn(emb(tokens), emb.weight).logsumexp(-1).sum().backward()
        if fn is linear:
            ours = emb.weight.grad.clone()
    torch.testing.assert_close(ours, emb.weight.grad)


def test_autocast_and_other_dtypes_use_f_linear():
    x, w = torch.randn(4, 8), torch.randn(5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn_applies(x, w)
        assert linear(x, w).dtype == torch.bfloat16
    assert not onednn_applies(x.double(), w.double())
    torch.testing.assert_close(linear(x.double(), w.double()), torch.nn.functional.linear(x.double(), w.double()))
