"""Every cell's Triton kernel, by cell name (importing this module needs triton)."""

from __future__ import annotations

from lstmkit.engines.fused import FusedKernel
from lstmkit.engines.triton.layernorm import TritonLayerNormKernel
from lstmkit.engines.triton.lstm import TritonCIFGKernel, TritonLSTMKernel, TritonPeepholeKernel
from lstmkit.engines.triton.rnn import TritonGRUKernel, TritonRNNKernel

TRITON_KERNELS: dict[str, type[FusedKernel]] = {
    "rnn": TritonRNNKernel, "lstm": TritonLSTMKernel, "gru": TritonGRUKernel, "peephole": TritonPeepholeKernel,
    "cifg": TritonCIFGKernel, "layernorm": TritonLayerNormKernel,
}
