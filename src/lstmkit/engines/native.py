"""The native engine: PyTorch's own kernels (oneDNN on CPU, cuDNN on GPU) for the plain cells.

It runs the whole stack in one call, as torch.nn.LSTM/GRU/RNN do, so it applies only when a
layer is exactly one of those: cell lstm without ablations, gru, or rnn.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit.cells import Cell

NATIVE_KERNELS = {
    "lstm": torch._VF.lstm,
    "gru": torch._VF.gru,
    "rnn_tanh": torch._VF.rnn_tanh,
    "rnn_relu": torch._VF.rnn_relu,
}


def native_support_reason(cell: Cell) -> str | None:
    """Why the native kernels cannot run `cell`, or None when they can."""
    if cell.name == "lstm" and cell.options():
        return f"cell {cell.describe()} is an ablation; the native kernels run the full LSTM only"
    if cell.name not in ("lstm", "gru", "rnn"):
        return f"cell {cell.name!r} has no native kernel (native runs lstm, gru and rnn)"
    return None


def run_native(
    cell: Cell,
    flat_weights: list[Tensor],
    data: Tensor,
    lengths: Tensor | None,
    h0: Tensor,
    c0: Tensor | None,
    *,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The stack over `data` (T, B, I), time-major: (output, h_n, c_n), as torch.nn computes them.

    `flat_weights`: every layer's and direction's parameters in torch.nn's order.
    """
    kernel = NATIVE_KERNELS[cell.name if cell.name != "rnn" else f"rnn_{cell.nonlinearity}"]
    options = (bias, num_layers, dropout, training, bidirectional)
    if lengths is None:
        hx = h0.contiguous() if c0 is None else (h0.contiguous(), c0.contiguous())
        output, *state = kernel(data, hx, flat_weights, *options, False)
    else:
        packed = pack_padded_sequence(data, lengths.cpu(), enforce_sorted=False)
        order = packed.sorted_indices
        hx = h0.index_select(1, order) if c0 is None else (h0.index_select(1, order), c0.index_select(1, order))
        packed_output, *state = kernel(packed.data, packed.batch_sizes, hx, flat_weights, *options)
        output, _ = pad_packed_sequence(
            PackedSequence(packed_output, packed.batch_sizes, order, packed.unsorted_indices),
            total_length=data.shape[0],
        )
        state = [part.index_select(1, packed.unsorted_indices) for part in state]
    h_n, c_n = (state[0], None) if c0 is None else state
    return output, h_n, c_n
