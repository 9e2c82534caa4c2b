"""Issue 17: the xLSTM cells (``slstm``, ``mlstm``, the ``xlstm`` block stack) pass the cell
contract suite, built directly from their classes (so this runs whether or not the installed
metadata lists their entry points yet)."""
import pytest
import torch

from lstm_pipeline.cells.mlstm import MLSTM
from lstm_pipeline.cells.slstm import SLSTM
from lstm_pipeline.cells.xlstm import XLSTM
from lstm_pipeline.testing import CellContract


class TestSLSTMContract(CellContract):
    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return SLSTM(input_size, hidden_size, num_layers, dropout, num_heads=2)


class TestSLSTMExpForgetContract(CellContract):
    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return SLSTM(input_size, hidden_size, num_layers, dropout, num_heads=4, forget_gate="exp")


class TestMLSTMContract(CellContract):
    seq_len = 7  # chunks of 3: ragged last chunk, and the two halves split inside a chunk

    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return MLSTM(input_size, hidden_size, num_layers, dropout, num_heads=2, chunk_size=3)


class TestXLSTMStackContract(CellContract):
    seq_len = 5

    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return XLSTM(input_size, hidden_size, num_layers, dropout, slstm_at=[0], num_heads=2, chunk_size=2)


class TestXLSTMOnlyMLSTMBlocksContract(CellContract):
    seq_len = 5

    def make_cell(self, input_size, hidden_size, num_layers, dropout=0.0):
        return XLSTM(input_size, hidden_size, num_layers, dropout, num_heads=2, chunk_size=3)


@pytest.mark.parametrize("build,match", [
    (lambda: SLSTM(4, 10, num_heads=4), r"model.cell.num_heads=4 must divide the width of the heads, 10 \(sLSTM: model.hidden_size=10\)"),
    (lambda: SLSTM(4, 8, forget_gate="tanh"), r"model.cell.forget_gate must be one of \['sigmoid', 'exp'\], not 'tanh'"),
    (lambda: MLSTM(4, 9, num_heads=2), r"model.cell.num_heads=2 must divide .* 9 \(mLSTM: model.hidden_size=9\)"),
    (lambda: MLSTM(4, 8, form="parallel"), r"model.cell.form must be one of \['chunkwise', 'recurrent'\]"),
    (lambda: MLSTM(4, 8, chunk_size=0), r"model.cell.chunk_size must be a positive number"),
    (lambda: XLSTM(4, 8, 4, slstm_at=[4]), r"model.cell.slstm_at=\[4\] names blocks outside 0..3 \(model.num_layers=4"),
    (lambda: XLSTM(4, 8, 2, num_heads=3), r"model.cell.num_heads=3 must divide .* 16 \(mLSTM blocks: model.cell.proj_factor=2.0"),
])
def test_bad_settings_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_xlstm_state_layout():
    """Batch at dim 1 in every state tensor (export, beam search, serve rely on it); h first (top_hidden)."""
    cell = XLSTM(6, 8, 4, slstm_at=[1], num_heads=2)
    shapes = [tuple(s.shape) for s in cell.init_state(3)]
    assert shapes == [(1, 3, 8), (3, 3, 2, 8, 8), (3, 3, 2, 8), (3, 3, 2)] + [(1, 3, 8)] * 4
    assert len(cell.state_batch_dims) == len(shapes) and set(cell.state_batch_dims) == {1}
    y, state = cell(torch.randn(3, 5, 6))
    torch.testing.assert_close(state[0][0], y[:, -1])


@pytest.mark.parametrize("cell", [{"name": "xlstm", "slstm_at": [1], "num_heads": 2, "chunk_size": 4},
                                  {"name": "mlstm", "num_heads": 2, "chunk_size": 4}])
def test_every_decoder_runs_on_xlstm_models(cell):
    """Every registered decoder (with its shipped settings) generates from an xLSTM model: the state
    is reordered, duplicated (beam search) and read (contrastive search's top_hidden) like any cell's."""
    from lstm_pipeline.models.lm import RecurrentLM
    from lstm_pipeline.registry import DECODERS
    from lstm_pipeline.testing import shipped_config

    torch.manual_seed(0)
    model = RecurrentLM(17, cell=cell, embedding_dim=8, hidden_size=8, num_layers=3).eval()
    for name in DECODERS.names():
        node = {**(shipped_config(DECODERS.config_group, name) or {}), "name": name}
        out = DECODERS.build(node).generate(model, [[1, 2, 3], [4]], max_new_tokens=6)
        assert len(out.sequences) == 2 and all(0 <= t < 17 for s in out.sequences for t in s), name
