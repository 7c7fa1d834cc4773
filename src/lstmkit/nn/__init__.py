"""Recurrent layer modules with torch.nn's API, and cell modules for stepping by hand."""

from lstmkit.nn.cell_modules import (
    CIFGLSTMCell, GRUCell, LayerNormLSTMCell, LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell,
)
from lstmkit.nn.layers import GRU, LSTM, RNN, CIFGLSTM, LayerNormLSTM, PeepholeLSTM
from lstmkit.nn.recurrent import GateTrace, Recurrent

__all__ = [
    "CIFGLSTM", "CIFGLSTMCell", "GRU", "GRUCell", "GateTrace", "LSTM", "LSTMCell", "LayerNormLSTM",
    "LayerNormLSTMCell", "PeepholeLSTM", "PeepholeLSTMCell", "RNN", "RNNCell", "Recurrent", "RecurrentCell",
]
