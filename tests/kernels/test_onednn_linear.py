"""The output layer's oneDNN products (models/linear.py) equal F.linear, forward and backward."""
import pytest
import torch

from lstm_pipeline.kernels.linear import linear, onednn_applies


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


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_linear_cross_entropy_equals_f_cross_entropy(with_bias, ignored, autocast):
    from lstm_pipeline.kernels.linear import linear_cross_entropy

    torch.manual_seed(0)
    n, h_size, vocab = 37, 16, 50
    h = torch.randn(n, h_size, requires_grad=True)
    w = torch.randn(vocab, h_size, requires_grad=True)
    b = torch.randn(vocab, requires_grad=True) if with_bias else None
    target = torch.randint(0, vocab, (n,))
    if ignored:
        target[::5] = -100  # document boundaries
    params = [h, w] + ([b] if with_bias else [])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, correct, count = linear_cross_entropy(h, w, b, target)
        ours = torch.autograd.grad(3.0 * loss, params)  # a scaled loss: the backward scales too
        logits = torch.nn.functional.linear(h, w, b).float()
        ref = torch.nn.functional.cross_entropy(logits, target)
        grads = torch.autograd.grad(3.0 * ref, params)
    tol = dict(rtol=2e-2, atol=2e-2) if autocast else {}
    torch.testing.assert_close(loss, ref, **tol)
    for a, r in zip(ours, grads):
        torch.testing.assert_close(a.float(), r.float(), **tol)
    valid = target != -100
    assert int(count) == int(valid.sum())
    assert int(correct) == int(((logits.argmax(-1) == target) & valid).sum())
