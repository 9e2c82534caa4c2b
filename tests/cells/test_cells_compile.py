"""Fused (compiled) per-step math against the plain-eager fallback."""
import os

import pytest
import torch

from lstm_pipeline.cells.custom import CustomCell, compiled
from lstm_pipeline.registry import CELLS

CUSTOM = [n for n in CELLS.names() if issubclass(CELLS.get(n), CustomCell)]


def run(name, mode, seed=0):
    torch.manual_seed(seed)
    cell = CELLS.build({"name": name, "compile": mode}, input_size=5, hidden_size=6, num_layers=2, dropout=0.0)
    x = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y, state = cell(x)
    (y.pow(2).sum() + state[-1].sum()).backward()
    grads = {n: p.grad for n, p in cell.named_parameters()}
    step_y, _ = cell.step(x[:, 0].detach(), cell.init_state(3))
    return y.detach(), grads, x.grad, step_y


def test_every_custom_cell_is_covered():
    assert {"lstm_cell", "layernorm_lstm", "peephole_lstm", "cifg_lstm", "gru_cell", "rnn", "min_gru"} <= set(CUSTOM)


def assert_rounding_close(a, b):
    """Equal up to float32 rounding, relative to the tensor's scale (1e-6 of its largest entry)."""
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6 * float(a.abs().max()) + 1e-12)


@pytest.mark.parametrize("name", CUSTOM)
def test_torchscript_is_numerically_identical_to_eager(name):
    y0, g0, xg0, s0 = run(name, False)
    y1, g1, xg1, s1 = run(name, "script")
    # the forward pass runs the very same kernels: bit for bit equal
    assert torch.equal(y0, y1) and torch.equal(s0, s1)
    # TorchScript differentiates the function with its own backward formulas, so gradients agree to
    # float32 rounding (measured: at most 5e-7 of the largest entry)
    assert_rounding_close(xg0, xg1)
    for n in g0:
        assert_rounding_close(g0[n], g1[n])


def test_compiled_functions_are_cached_per_process():
    fn = CELLS.get("lstm_cell").pointwise
    assert compiled(fn, "script") is compiled(fn, "script")
    assert compiled(fn, "eager") is fn
    a = CELLS.build({"name": "lstm_cell", "compile": True}, input_size=2, hidden_size=2)
    assert a.compile_mode == "script" and a.step_fn is compiled(fn, "script")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LSTM_PIPELINE_TEST_COMPILE") != "1",
                    reason="torch.compile takes tens of seconds here; set LSTM_PIPELINE_TEST_COMPILE=1")
@pytest.mark.parametrize("name", ["lstm_cell", "gru_cell"])
def test_inductor_matches_eager(name):
    y0, g0, xg0, s0 = run(name, False)
    y1, g1, xg1, s1 = run(name, "inductor")
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s1, s0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xg1, xg0, rtol=1e-5, atol=1e-6)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-5, atol=1e-6)
