"""Issue 17: the xLSTM cells against their references, to 1e-5 in float32 with the same weights.

* ``slstm`` against the ``xlstm`` package's pure-PyTorch ("vanilla") sLSTM cell
  (``xlstm.blocks.slstm.cell.sLSTMCell`` with ``backend="vanilla"``): outputs, final states, the
  gradients of every weight and of the input, and ``step``.
* ``mlstm`` against ``transformers.models.xlstm``'s native PyTorch mLSTM functions
  (``mlstm_chunkwise_native_autograd``, ``mlstm_recurrent_sequence_native``): the chunkwise forward,
  the recurrent form and the cell's ``step`` all equal them and each other (values and gradients).

transformers defines those functions only where the ``xlstm`` package is *not* installed (else its
model imports the package's kernels), and this project's dev extra installs it for the sLSTM
reference: :func:`transformers_native` loads transformers' own module file a second time, under
another name, with its "is xlstm installed" check answering no. Nothing else is replaced.
"""
from __future__ import annotations

import importlib.util
import sys
from unittest import mock

import pytest
import torch

from lstm_pipeline.cells.mlstm import MLSTM, mlstm_chunkwise, mlstm_recurrent, mlstm_step
from lstm_pipeline.cells.slstm import SLSTM

TOL = dict(rtol=1e-5, atol=1e-5)


# -- sLSTM against the xlstm package ------------------------------------------------------------
def vanilla_slstm(cell: SLSTM):
    """The xlstm package's vanilla sLSTM cell with ``cell``'s recurrent weights and bias (layer 0)."""
    ref_mod = pytest.importorskip(
        "xlstm.blocks.slstm.cell",
        reason="the sLSTM reference is the `xlstm` package (a dev dependency: pip install -e '.[dev]' or pip install xlstm)")
    config = ref_mod.sLSTMCellConfig(hidden_size=cell.hidden_size, num_heads=cell.num_heads, backend="vanilla",
                                     dtype="float32", dtype_b="float32", enable_automatic_mixed_precision=False,
                                     input_shape="BSGNH", output_shape="BSH")
    ref = ref_mod.sLSTMCell(config)
    assert type(ref).__name__ == "sLSTMCell_vanilla"
    with torch.no_grad():  # the vanilla backend's internal layouts are this cell's: (heads, 4d, d), (4H,) i,f,z,o
        ref._recurrent_kernel_.copy_(cell.weight_hh_l0)
        ref._bias_.copy_(cell.bias_l0)
    return ref


def _slstm(heads=2, seed=0):
    torch.manual_seed(seed)
    cell = SLSTM(5, 8, 1, num_heads=heads)
    with torch.no_grad():  # weights larger than the initial ones: the stabiliser and both max branches are used
        for p in cell.parameters():
            p.normal_(0.0, 0.8)
    return cell


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_slstm_equals_xlstm_vanilla_forward_states_and_gradients(heads):
    cell = _slstm(heads)
    ref = vanilla_slstm(cell)
    x = torch.randn(3, 12, 5, generator=torch.Generator().manual_seed(1))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, state = cell(x1)
    w_ref = cell.weight_ih_l0.detach().clone().requires_grad_()  # the reference's own copy of W
    y_ref, s_ref = ref(torch.nn.functional.linear(x2, w_ref))  # W x; the reference adds b itself
    torch.testing.assert_close(y, y_ref, **TOL)
    for name, a, b in zip("hcnm", state, s_ref):  # reference state (4, B, H): y, c, n, m
        torch.testing.assert_close(a[0], b, **TOL, msg=f"final {name}")
    w = torch.randn_like(y)
    ((y * w).sum() + state[1].sum() + state[3].sum()).backward()
    ((y_ref * w).sum() + s_ref[1].sum() + s_ref[3].sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL, msg="gradient of the input")
    torch.testing.assert_close(cell.weight_ih_l0.grad, w_ref.grad, **TOL, msg="gradient of W")
    torch.testing.assert_close(cell.weight_hh_l0.grad, ref._recurrent_kernel_.grad, **TOL, msg="gradient of R")
    torch.testing.assert_close(cell.bias_l0.grad, ref._bias_.grad, **TOL, msg="gradient of b")


def test_slstm_step_equals_xlstm_vanilla_step():
    """``step`` token by token == the reference's forward, and == its one-step function
    (``slstm_forward_step``) fed the same state, state by state."""
    cell = _slstm(2).eval()
    ref = vanilla_slstm(cell)
    from xlstm.blocks.slstm.src.vanilla import slstm_forward_step

    x = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(2))
    state = cell.init_state(2)
    with torch.no_grad():
        y_ref, _ = ref(torch.nn.functional.linear(x, cell.weight_ih_l0))
        for t in range(x.size(1)):
            wx = torch.nn.functional.linear(x[:, t], cell.weight_ih_l0).unsqueeze(0)  # (1, B, 4H)
            ref_states, _ = slstm_forward_step(wx, torch.stack([s[0] for s in state]), ref._recurrent_kernel_,
                                               ref._bias_, ref.pointwise)
            y_t, state = cell.step(x[:, t], state)
            torch.testing.assert_close(y_t, y_ref[:, t], **TOL)
            for name, a, b in zip("hcnm", state, ref_states[:, 0]):
                torch.testing.assert_close(a[0], b, **TOL, msg=f"{name} after step {t}")


def test_slstm_exponential_forget_gate_differs_and_is_finite():
    """forget_gate=exp uses log f = f~ (the reference implements only the sigmoid forget gate)."""
    x = torch.randn(2, 30, 5)
    a, b = _slstm(2), _slstm(2)
    b.forget_gate = "exp"
    ya, _ = a(x)
    yb, sb = b(x)
    assert torch.isfinite(yb).all() and all(torch.isfinite(s).all() for s in sb)
    assert (ya - yb).abs().max() > 1e-3


# -- mLSTM against transformers' native functions -----------------------------------------------
@pytest.fixture(scope="module")
def native():
    return transformers_native()


def transformers_native():
    """transformers' modeling_xlstm module as it is where the xlstm package is absent (its native
    PyTorch mLSTM functions), loaded under a private name."""
    pkg = pytest.importorskip("transformers.models.xlstm", reason="the mLSTM reference is transformers (dev extra)")
    import transformers.utils

    name = "transformers.models.xlstm._lstm_pipeline_native_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, pkg.__path__[0] + "/modeling_xlstm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with mock.patch.object(transformers.utils, "is_xlstm_available", lambda: False):
        spec.loader.exec_module(module)
    assert not module.external_xlstm and hasattr(module, "mlstm_chunkwise_native_autograd")
    return module


def _qkvif(B=2, nh=3, T=48, d=8, dtype=torch.float32, seed=0):
    """Inputs as a model makes them: q, k, v ~ N(0, 1), input gate ~ N(0, 1), forget gate ~ N(3, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, nh, T, d, generator=g, dtype=dtype) for _ in range(3))
    i = torch.randn(B, nh, T, generator=g, dtype=dtype)
    f = 3.0 + 1.5 * torch.randn(B, nh, T, generator=g, dtype=dtype)
    return q, k, v, i, f


def _state(B, nh, d, dtype=torch.float32, seed=5, zero=False):
    g = torch.Generator().manual_seed(seed)
    if zero:
        return torch.zeros(B, nh, d, d, dtype=dtype), torch.zeros(B, nh, d, dtype=dtype), torch.zeros(B, nh, dtype=dtype)
    return (0.3 * torch.randn(B, nh, d, d, generator=g, dtype=dtype), torch.rand(B, nh, d, generator=g, dtype=dtype),
            torch.randn(B, nh, generator=g, dtype=dtype))


@pytest.mark.parametrize("zero_state", [True, False])
@pytest.mark.parametrize("chunk", [16, 8])
def test_mlstm_chunkwise_and_recurrent_equal_transformers(native, chunk, zero_state):
    q, k, v, i, f = _qkvif()
    c0, n0, m0 = _state(2, 3, 8, zero=zero_state)
    h, c, n, m = mlstm_chunkwise(q, k, v, i, f, c0, n0, m0, chunk_size=chunk)
    h_ref, (c_ref, n_ref, m_ref) = native.mlstm_chunkwise_native_autograd(
        q, k, v, i, f, c_initial=c0, n_initial=n0, m_initial=m0.unsqueeze(-1), return_last_states=True,
        chunk_size=chunk)
    torch.testing.assert_close(h, h_ref, **TOL)
    torch.testing.assert_close((c, n, m), (c_ref, n_ref, m_ref.squeeze(-1)), **TOL)
    h_rec, c_rec, n_rec, m_rec = mlstm_recurrent(q, k, v, i, f, c0, n0, m0)
    h_ref2, (c_ref2, n_ref2, m_ref2) = native.mlstm_recurrent_sequence_native(
        q, k, v, i, f, c_initial=c0, n_initial=n0, m_initial=m0.unsqueeze(-1), return_last_states=True)
    torch.testing.assert_close(h_rec, h_ref2, **TOL)
    torch.testing.assert_close((c_rec, n_rec, m_rec), (c_ref2, n_ref2, m_ref2.squeeze(-1)), **TOL)
    # the two forms are one function, and they end in the same state (the same stabiliser)
    torch.testing.assert_close(h, h_rec, **TOL)
    torch.testing.assert_close((c, n, m), (c_rec, n_rec, m_rec), **TOL)


def test_mlstm_step_equals_transformers_step(native):
    q, k, v, i, f = _qkvif(T=1)
    c0, n0, m0 = _state(2, 3, 8)
    h, c, n, m = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, 0], f[:, :, 0], c0, n0, m0)
    h_ref, (c_ref, n_ref, m_ref) = native.mlstm_recurrent_step_native(
        q[:, :, 0], k[:, :, 0], v[:, :, 0], i[:, :, :1], f[:, :, :1], c0, n0, m0.unsqueeze(-1))
    torch.testing.assert_close((h, c, n, m), (h_ref, c_ref, n_ref, m_ref.squeeze(-1)), **TOL)


def test_mlstm_chunkwise_gradients_equal_transformers(native):
    ours = [t.clone().requires_grad_() for t in _qkvif(T=32)]
    theirs = [t.clone().requires_grad_() for t in _qkvif(T=32)]
    h, c, n, m = mlstm_chunkwise(*ours, *_state(2, 3, 8, zero=True), chunk_size=8)
    h_ref, (c_ref, n_ref, _) = native.mlstm_chunkwise_native_autograd(*theirs, return_last_states=True, chunk_size=8)
    w = torch.randn_like(h)
    ((h * w).sum() + c.sum() + n.sum()).backward()
    ((h_ref * w).sum() + c_ref.sum() + n_ref.sum()).backward()
    for name, a, b in zip(("q", "k", "v", "i", "f"), ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")


def test_mlstm_chunkwise_equals_recurrent_in_float64_to_rounding():
    args = _qkvif(T=37, dtype=torch.float64)  # a ragged last chunk
    state = _state(2, 3, 8, dtype=torch.float64)
    a = mlstm_chunkwise(*args, *state, chunk_size=16)
    b = mlstm_recurrent(*args, *state)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-11)


def test_mlstm_cell_forward_step_and_recurrent_form_agree(native):
    """The cell: forward (chunkwise) == forward with form=recurrent == step token by token == the
    reference recurrence on the cell's own projections."""
    torch.manual_seed(0)
    cell = MLSTM(5, 12, 2, num_heads=3, chunk_size=4).eval()
    rec = MLSTM(5, 12, 2, num_heads=3, form="recurrent").eval()
    rec.load_state_dict(cell.state_dict())
    x = torch.randn(2, 11, 5)
    with torch.no_grad():
        y, s = cell(x)
        y_rec, s_rec = rec(x)
        st = cell.init_state(2)
        ys = []
        for t in range(x.size(1)):
            y_t, st = cell.step(x[:, t], st)
            ys.append(y_t)
        # layer 0 by hand through transformers' recurrence
        proj = torch.nn.functional.linear(x, cell.weight_ih_l0, cell.bias_ih_l0)
        q, k, v, o, i, f = cell._split(proj)
        heads = [t.reshape(2, 11, 3, 4).transpose(1, 2) for t in (q, k, v)]
        h_ref = native.mlstm_recurrent_sequence_native(*heads, i.transpose(1, 2), f.transpose(1, 2))
        y0 = cell._out(0, h_ref.transpose(1, 2).reshape(2, 11, 12), o)
        y0_ours, _ = cell.run_layer(0, x, [s0[0] for s0 in cell.init_state(2)])
    torch.testing.assert_close(y_rec, y, **TOL)
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)
    torch.testing.assert_close(y0_ours, y0, **TOL)
    for a, b, c in zip(s, s_rec, st):
        torch.testing.assert_close(a, b, **TOL)
        torch.testing.assert_close(a, c, **TOL)
