"""One contract test suite, run over every cell registered under ``lstm_pipeline.cells``."""
import pytest
import torch

from lstm_pipeline.cells.base import RecurrentCell
from lstm_pipeline.registry import CELLS

B, T, E, H, L = 3, 7, 5, 6, 2
NAMES = CELLS.names()


def build(name: str, **kw) -> RecurrentCell:
    torch.manual_seed(0)
    cell = CELLS.build({"name": name, **kw}, input_size=E, hidden_size=H, num_layers=L, dropout=0.0)
    return cell.double().eval()


def inputs(b=B, t=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, E, generator=g, dtype=torch.float64)


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def states_close(s1, s2, tol=1e-10):
    assert len(s1) == len(s2)
    for a, b in zip(s1, s2):
        close(a, b, tol)


def test_every_builtin_cell_is_registered():
    expected = {"lstm", "gru", "lstm_cell", "layernorm_lstm", "peephole_lstm", "cifg_lstm", "gru_cell",
                "rnn", "min_gru", "slstm", "mlstm", "xlstm"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_state_batch_dims(name):
    cell = build(name)
    state = cell.init_state(B, dtype=torch.float64)
    assert isinstance(state, tuple) and all(isinstance(s, torch.Tensor) for s in state)
    y, new = cell(inputs(), state)
    assert y.shape == (B, T, cell.output_size)
    assert isinstance(new, tuple) and len(new) == len(state)
    for s, n, d in zip(state, new, cell._batch_dims(state)):
        assert s.shape == n.shape and s.shape[d] == B
    y0, _ = cell(inputs())  # state=None means the initial state
    close(y0, y)


@pytest.mark.parametrize("name", NAMES)
def test_state_carry_equals_one_long_sequence(name):
    cell = build(name)
    x = inputs()
    y, state = cell(x)
    y1, s1 = cell(x[:, :3])
    y2, s2 = cell(x[:, 3:], s1)
    close(torch.cat([y1, y2], 1), y)
    states_close(s2, state)


@pytest.mark.parametrize("name", NAMES)
def test_step_by_step_equals_forward(name):
    cell = build(name)
    x = inputs()
    y, state = cell(x)
    s = cell.init_state(B, dtype=torch.float64)
    ys = []
    for t in range(T):
        y_t, s = cell.step(x[:, t], s)
        assert y_t.shape == (B, cell.output_size)
        ys.append(y_t)
    close(torch.stack(ys, 1), y)
    states_close(s, state)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    cell = build(name).train()
    x = inputs().requires_grad_()
    y, state = cell(x)
    (y.pow(2).sum() + sum(s.sum() for s in state)).backward()
    for pname, p in cell.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reached {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_reorder_state_follows_the_rows(name):
    cell = build(name)
    x = inputs()
    _, state = cell(x[:, :4])
    index = torch.tensor([2, 0, 0, 1])  # reorder and duplicate rows, as beam search does
    moved = cell.reorder_state(state, index)
    for s, m, d in zip(state, moved, cell._batch_dims(state)):
        assert m.shape[d] == len(index)
        close(m, s.index_select(d, index))
    y_moved, _ = cell(x[index, 4:], moved)  # continuing the reordered rows ...
    y_all, _ = cell(x[:, 4:], state)
    close(y_moved, y_all[index])  # ... is the same as reordering the continued output


@pytest.mark.parametrize("name", NAMES)
def test_dropout_between_layers_only_in_training(name):
    torch.manual_seed(0)
    cell = CELLS.build({"name": name}, input_size=E, hidden_size=H, num_layers=L, dropout=0.5).double()
    x = inputs()
    cell.eval()
    close(cell(x)[0], cell(x)[0])
    cell.train()
    torch.manual_seed(1)
    a = cell(x)[0]
    torch.manual_seed(2)
    b = cell(x)[0]
    assert not torch.allclose(a, b), f"{name}: dropout=0.5 between layers changed nothing in training"
