"""lstmkit: the LSTM family for PyTorch, as drop-in torch.nn modules."""

from lstmkit import cells
from lstmkit.nn import CIFGLSTM, GRU, LSTM, RNN, GateTrace, LayerNormLSTM, PeepholeLSTM, Recurrent
from lstmkit.nn import (
    CIFGLSTMCell, GRUCell, LayerNormLSTMCell, LSTMCell, PeepholeLSTMCell, RecurrentCell, RNNCell,
)
from lstmkit.nn.inputs import ShapeError
from lstmkit.nn.serialization import allow_layers_in_weights_only_load

# A whole layer saved with torch.save loads with torch.load's default weights_only=True.
allow_layers_in_weights_only_load()

__version__ = "0.2.0"

__all__ = [
    "CIFGLSTM",
    "CIFGLSTMCell",
    "GRU",
    "GRUCell",
    "GateTrace",
    "LSTM",
    "LSTMCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "PeepholeLSTM",
    "PeepholeLSTMCell",
    "RNN",
    "RNNCell",
    "Recurrent",
    "RecurrentCell",
    "ShapeError",
    "cells",
]
