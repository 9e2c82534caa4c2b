"""Tests of the Mogrifier cell: the lstm-pipeline cell contract, a plain-LSTM special case, an
independent NumPy reference of the paper's equations, registration and configs."""
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lstm_pipeline.config.checks import check
from lstm_pipeline.config.schema import register_schemas
from lstm_pipeline.registry import CELLS
from lstm_pipeline.testing import CellContract
from lstm_pipeline_mogrifier.cell import MogrifierLSTM


class TestMogrifierContract(CellContract):
    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return MogrifierLSTM(input_size, hidden_size, num_layers, dropout, rounds=5)


class TestLowRankMogrifierContract(CellContract):
    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return MogrifierLSTM(input_size, hidden_size, num_layers, dropout, rounds=4, rank=2)


class TestPlainRoundsContract(CellContract):
    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return MogrifierLSTM(input_size, hidden_size, num_layers, dropout, rounds=0)


def test_zero_rounds_is_exactly_nn_lstm():
    torch.manual_seed(0)
    E, H, L = 5, 7, 2
    cell = MogrifierLSTM(E, H, L, rounds=0).double()
    ref = torch.nn.LSTM(E, H, L, batch_first=True).double()
    with torch.no_grad():
        for l, layer in enumerate(cell.layers):
            w_x, w_h = layer.weight.split([layer.input_size, H], dim=1)
            getattr(ref, f"weight_ih_l{l}").copy_(w_x)
            getattr(ref, f"weight_hh_l{l}").copy_(w_h)
            getattr(ref, f"bias_ih_l{l}").copy_(layer.bias)
            getattr(ref, f"bias_hh_l{l}").zero_()
    x = torch.randn(3, 6, E, dtype=torch.float64)
    y, (h, c) = cell(x)
    y_ref, (h_ref, c_ref) = ref(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=1e-12)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_mogrifier_step(x, h, c, Q, R, W, U, b):
    """The paper's equations for one step of one layer, written out in NumPy."""
    xs = {-1: x}
    hs = {0: h}
    rounds = len(Q) + len(R)
    for i in range(1, rounds + 1):
        if i % 2 == 1:
            xs[i] = 2 * _sigmoid(hs[i - 1] @ Q[(i - 1) // 2].T) * xs[i - 2]
            hs[i] = hs[i - 1]
        else:
            hs[i] = 2 * _sigmoid(xs[i - 1] @ R[i // 2 - 1].T) * hs[i - 2]
            xs[i] = xs[i - 1]
    xm, hm = xs[rounds] if rounds else x, hs[rounds] if rounds else h
    gates = xm @ W.T + hm @ U.T + b
    H = h.shape[1]
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


@pytest.mark.parametrize("rounds,rank", [(1, 0), (5, 0), (6, 3)])
def test_matches_numpy_reference_of_the_paper(rounds, rank):
    torch.manual_seed(1)
    E, H, B, T = 4, 6, 2, 5
    cell = MogrifierLSTM(E, H, 1, rounds=rounds, rank=rank).double().eval()
    layer = cell.layers[0]

    def mat(gate):
        return (gate.left @ gate.right if gate.rank else gate.weight).detach().numpy()

    Q = [mat(g) for g in layer.q]
    R = [mat(g) for g in layer.r]
    W = layer.weight[:, :E].detach().numpy()
    U = layer.weight[:, E:].detach().numpy()
    b = layer.bias.detach().numpy()
    x = torch.randn(B, T, E, dtype=torch.float64)
    y, _ = cell(x)
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    for t in range(T):
        h, c = numpy_mogrifier_step(x[:, t].numpy(), h, c, Q, R, W, U, b)
        np.testing.assert_allclose(y[:, t].detach().numpy(), h, rtol=0, atol=1e-12)


def test_mogrification_changes_the_result():
    torch.manual_seed(0)
    plain = MogrifierLSTM(4, 6, 1, rounds=0)
    mog = MogrifierLSTM(4, 6, 1, rounds=5)
    with torch.no_grad():
        mog.layers[0].weight.copy_(plain.layers[0].weight)
        mog.layers[0].bias.copy_(plain.layers[0].bias)
    x = torch.randn(2, 5, 4)
    assert not torch.allclose(plain(x)[0], mog(x)[0])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rounds"):
        MogrifierLSTM(4, 6, rounds=-1)
    with pytest.raises(ValueError, match="rank"):
        MogrifierLSTM(4, 6, rank=-2)


def test_registered_as_a_cell_by_this_distribution():
    assert CELLS.get("mogrifier") is MogrifierLSTM
    assert CELLS.entries()["mogrifier"].distribution == "lstm-pipeline-mogrifier"
    cell = CELLS.build({"name": "mogrifier", "rounds": 3, "rank": 2}, input_size=4, hidden_size=6, num_layers=2)
    assert isinstance(cell, MogrifierLSTM) and cell.rounds == 3 and cell.rank == 2


def _compose(overrides):
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_module("lstm_pipeline.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    cfg.run_dir = "/tmp/x"
    return cfg


def test_cell_config_composes_through_the_search_path_plugin():
    cfg = _compose(["model/cell=mogrifier"])
    assert OmegaConf.to_container(cfg.model.cell) == {"name": "mogrifier", "rounds": 5, "rank": 0}
    check("train", cfg)


def test_ptb_preset_composes_and_validates():
    cfg = _compose(["experiment=mogrifier_ptb", "data.data_dir=/data/ptb"])
    assert cfg.model.cell.name == "mogrifier" and cfg.model.cell.rounds == 6
    assert cfg.batching.bptt == 70 and cfg.model.tie_weights
    check("train", cfg)
