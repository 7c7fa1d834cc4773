"""`torch.save(layer)` / `torch.load(path)` with torch's default `weights_only=True`.

torch's safe unpickler rebuilds only the classes it has been told about. A pickled layer or
cell module names two of lstmkit's: its class (`lstmkit.nn.layers.LSTM`,
`lstmkit.nn.cell_modules.LSTMCell`, ...) and its cell, a frozen dataclass of plain options (`lstmkit.cells.lstm.LSTMStep`, ...). Everything else it holds is
what torch.nn's own modules hold (parameters, ordered dicts) or plain data (`_all_weights`, a
list of lists of names; `_initialisers`, names to initialiser names; the options as ints,
floats, bools and strings), which the unpickler takes as it is. So importing lstmkit allows
exactly these classes and nothing wider: no function, no module-level callable.
"""

from __future__ import annotations

import torch

from lstmkit.cells import CELLS
from lstmkit.nn.cell_modules import CELL_MODULES
from lstmkit.nn.layers import CIFGLSTM, GRU, LSTM, RNN, LayerNormLSTM, PeepholeLSTM
from lstmkit.nn.recurrent import Recurrent

LAYERS = (Recurrent, LSTM, GRU, RNN, PeepholeLSTM, CIFGLSTM, LayerNormLSTM)
SAFE_GLOBALS = (*LAYERS, *CELL_MODULES, *CELLS.values())


def allow_layers_in_weights_only_load() -> None:
    """Register the layer and cell classes with torch's safe unpickler (torch >= 2.4 has one;
    before it, `torch.load` defaulted to full pickle and needed nothing)."""
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals(list(SAFE_GLOBALS))
