"""Each custom cell against an independent implementation of its equations."""
import pytest
import torch
from torch import nn

from lstm_pipeline.registry import CELLS

B, T, E, H = 3, 6, 5, 4


def build(name, layers=2, **kw):
    torch.manual_seed(0)
    return CELLS.build({"name": name, **kw}, input_size=E, hidden_size=H, num_layers=layers, dropout=0.0)


def x_and_state(layers, n_state, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, E, generator=g)
    state = tuple(torch.randn(layers, B, H, generator=g) for _ in range(n_state))
    return x, state


def assert_same_grads(a: nn.Module, b: nn.Module, tol=1e-5):
    ga = {n: p.grad for n, p in a.named_parameters()}
    gb = {n: p.grad for n, p in b.named_parameters()}
    assert ga.keys() == gb.keys()
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=tol, atol=tol, msg=f"gradient of {n}")


@pytest.mark.parametrize("name,torch_cls,kw", [
    ("lstm_cell", nn.LSTM, {}),
    ("gru_cell", nn.GRU, {}),
    ("rnn", nn.RNN, {"nonlinearity": "tanh"}),
    ("rnn", nn.RNN, {"nonlinearity": "relu"}),
])
def test_reference_cells_match_torch_forward_and_gradients(name, torch_cls, kw):
    layers = 3
    cell = build(name, layers, **kw)
    ref = torch_cls(E, H, num_layers=layers, batch_first=True, **kw)
    ref.load_state_dict(cell.state_dict())  # same parameter names and layout
    x, state = x_and_state(layers, 2 if name == "lstm_cell" else 1)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, s = cell(x1, state)
    y_ref, s_ref = ref(x2, state if name == "lstm_cell" else state[0])
    s_ref = s_ref if isinstance(s_ref, tuple) else (s_ref,)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(s, s_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(y)
    ((y * w).sum() + s[-1].sum()).backward()
    ((y_ref * w).sum() + s_ref[-1].sum()).backward()
    assert_same_grads(cell, ref)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_reference_cells_differ_from_torch_when_weights_differ():
    """Guards the test above against comparing a function with itself."""
    cell = build("lstm_cell", 1)
    ref = nn.LSTM(E, H, batch_first=True)
    x, state = x_and_state(1, 2)
    assert not torch.allclose(cell(x, state)[0], ref(x, state)[0], atol=1e-3)


def _lstm_terms(cell, k, x_t, h):
    gates = x_t @ getattr(cell, f"weight_ih_l{k}").T + getattr(cell, f"bias_ih_l{k}")
    return gates + h @ getattr(cell, f"weight_hh_l{k}").T + getattr(cell, f"bias_hh_l{k}")


def _loop(cell, x, state, one_step):
    """Run ``one_step(k, x_t, layer_state) -> layer_state`` over layers and time, by hand."""
    state = [list(s.unbind(0)) for s in state]  # [state tensor][layer] -> (B, H)
    ys = []
    for t in range(x.size(1)):
        inp = x[:, t]
        for k in range(cell.num_layers):
            new = one_step(k, inp, [s[k] for s in state])
            for i, v in enumerate(new):
                state[i][k] = v
            inp = new[0]
        ys.append(inp)
    return torch.stack(ys, 1), tuple(torch.stack(s) for s in state)


def test_peephole_lstm_equations():
    cell = build("peephole_lstm")
    x, state = x_and_state(2, 2)

    def one(k, x_t, st):
        h, c = st
        i, f, g, o = _lstm_terms(cell, k, x_t, h).split(H, 1)
        p = lambda n: getattr(cell, f"peephole_{n}_l{k}")  # noqa: E731
        i, f = torch.sigmoid(i + p("i") * c), torch.sigmoid(f + p("f") * c)
        c = f * c + i * torch.tanh(g)
        return [torch.sigmoid(o + p("o") * c) * torch.tanh(c), c]

    y_ref, s_ref = _loop(cell, x, state, one)
    y, s = cell(x, state)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s[1], s_ref[1])


def test_peephole_lstm_with_zero_peepholes_is_the_lstm():
    cell, plain = build("peephole_lstm"), build("lstm_cell")
    with torch.no_grad():
        for n, p in cell.named_parameters():
            if n.startswith("peephole"):
                p.zero_()
    plain.load_state_dict({n: p for n, p in cell.state_dict().items() if not n.startswith("peephole")})
    x, state = x_and_state(2, 2)
    torch.testing.assert_close(cell(x, state)[0], plain(x, state)[0])


def test_cifg_lstm_equations():
    cell = build("cifg_lstm")
    x, state = x_and_state(2, 2)

    def one(k, x_t, st):
        h, c = st
        f, g, o = _lstm_terms(cell, k, x_t, h).split(H, 1)
        f = torch.sigmoid(f)
        c = f * c + (1 - f) * torch.tanh(g)
        return [torch.sigmoid(o) * torch.tanh(c), c]

    y_ref, s_ref = _loop(cell, x, state, one)
    y, s = cell(x, state)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s[1], s_ref[1])
    assert cell.weight_hh_l0.shape == (3 * H, H)


def test_layernorm_lstm_equations():
    cell = build("layernorm_lstm")
    with torch.no_grad():  # non-trivial gains and biases
        for n, p in cell.named_parameters():
            if n.startswith("ln_"):
                p.uniform_(0.5, 1.5)

    def ln(v, k, which):
        mean, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
        w, b = getattr(cell, f"ln_{which}_weight_l{k}"), getattr(cell, f"ln_{which}_bias_l{k}")
        return (v - mean) / torch.sqrt(var + 1e-5) * w + b

    def one(k, x_t, st):
        h, c = st
        a = (ln(x_t @ getattr(cell, f"weight_ih_l{k}").T + getattr(cell, f"bias_ih_l{k}"), k, "x")
             + ln(h @ getattr(cell, f"weight_hh_l{k}").T + getattr(cell, f"bias_hh_l{k}"), k, "h"))
        i, f, g, o = a.split(H, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return [torch.sigmoid(o) * torch.tanh(ln(c, k, "c")), c]

    x, state = x_and_state(2, 2)
    y_ref, _ = _loop(cell, x, state, one)
    torch.testing.assert_close(cell(x, state)[0], y_ref)


def test_min_gru_equations_and_long_windows():
    cell = build("min_gru").double()
    x = torch.randn(2, 1000, E, dtype=torch.float64)  # long: products of (1 - z) underflow to 0
    h0 = torch.rand(2, 2, H, dtype=torch.float64)

    def g(a):
        return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))

    def one(k, x_t, st):
        z, cand = (x_t @ getattr(cell, f"weight_ih_l{k}").T + getattr(cell, f"bias_ih_l{k}")).split(H, 1)
        z = torch.sigmoid(z)
        return [(1 - z) * st[0] + z * g(cand)]

    y_ref, s_ref = _loop(cell, x, (h0,), one)
    y, s = cell(x, (h0,))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(s[0], s_ref[0], rtol=1e-9, atol=1e-9)
    y32, _ = cell.float()(x.float(), (h0.float(),))  # float32: still finite and close
    torch.testing.assert_close(y32.double(), y_ref, rtol=1e-4, atol=1e-4)


def test_fused_lstm_step_with_projection():
    torch.manual_seed(0)
    cell = CELLS.build({"name": "lstm", "proj_size": 3}, input_size=E, hidden_size=H, num_layers=2, dropout=0.0)
    x = torch.randn(B, T, E)
    y, state = cell(x)
    assert y.shape == (B, T, 3) and state[0].shape == (2, B, 3) and state[1].shape == (2, B, H)
    s = cell.init_state(B)
    for t in range(T):
        y_t, s = cell.step(x[:, t], s)
        torch.testing.assert_close(y_t, y[:, t], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s[1], state[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad,match", [
    ({"name": "rnn", "nonlinearity": "sigmoid"}, "nonlinearity must be one of"),
    ({"name": "lstm_cell", "compile": "fast"}, "compile must be"),
])
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        CELLS.build(bad, input_size=E, hidden_size=H, num_layers=1, dropout=0.0)


def test_wrong_state_shape_is_explained():
    cell = build("lstm_cell")
    with pytest.raises(ValueError, match=r"\(num_layers, batch, hidden\)"):
        cell(torch.randn(B, T, E), (torch.zeros(1, B, H), torch.zeros(1, B, H)))
