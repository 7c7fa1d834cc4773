"""Recurrent layer modules with torch.nn's API."""

from lstmkit.nn.layers import GRU, LSTM, RNN, CIFGLSTM, LayerNormLSTM, PeepholeLSTM
from lstmkit.nn.recurrent import GateTrace, Recurrent

__all__ = ["CIFGLSTM", "GRU", "GateTrace", "LSTM", "LayerNormLSTM", "PeepholeLSTM", "RNN", "Recurrent"]
