"""The fused engine (CPU): one autograd.Function per layer and direction, backward by hand.

The loop over time is `layer.py`; each cell's point-wise step, forward in place and backward
derived by hand, is a `FusedKernel` in the file named after the cell.
"""

from __future__ import annotations

from lstmkit.engines.fused.gru import GRUKernel
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep
from lstmkit.engines.fused.layer import FusedEngine
from lstmkit.engines.fused.layernorm import LayerNormKernel
from lstmkit.engines.fused.lstm import CIFGKernel, LSTMKernel, PeepholeKernel
from lstmkit.engines.fused.rnn import RNNKernel

__all__ = [
    "CIFGKernel", "FusedEngine", "FusedGrads", "FusedKernel", "FusedStep", "GRUKernel", "LSTMKernel",
    "LayerNormKernel", "PeepholeKernel", "RNNKernel",
]
