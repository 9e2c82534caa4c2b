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
