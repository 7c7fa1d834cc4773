"""lstmkit: the LSTM family for PyTorch, as drop-in torch.nn modules."""

from lstmkit import cells
from lstmkit.nn import CIFGLSTM, GRU, LSTM, RNN, GateTrace, LayerNormLSTM, PeepholeLSTM, Recurrent

__version__ = "0.1.0"

__all__ = [
    "CIFGLSTM",
    "GRU",
    "GateTrace",
    "LSTM",
    "LayerNormLSTM",
    "PeepholeLSTM",
    "RNN",
    "Recurrent",
    "cells",
]
