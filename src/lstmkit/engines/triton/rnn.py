"""The Elman RNN's and the GRU's step as one Triton kernel each way."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from lstmkit.cells import LayerWeights
from lstmkit.engines.fused import FusedGrads, FusedStep, GRUKernel, RNNKernel
from lstmkit.engines.triton.launch import block_size, grid, pre_activation, store_gradient, tanh


@triton.jit
def rnn_forward(gates, product, h_new, h_low, hidden, RELU: tl.constexpr, ADD_PRODUCT: tl.constexpr,
                BLOCK: tl.constexpr):
    """h' from the pre-activation in `gates` (plus `product` with ADD_PRODUCT, and h' into
    `h_low` in the compute dtype too)."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    pre = pre_activation(gates + row * hidden + columns, product + row * hidden + columns, 0, inside, ADD_PRODUCT)
    if RELU:
        out = tl.maximum(pre, 0.0)                                         # h' = relu(·)
    else:
        out = tanh(pre)                                                    # h' = tanh(·)
    tl.store(h_new + row * hidden + columns, out, mask=inside)
    if ADD_PRODUCT:
        tl.store(h_low + row * hidden + columns, out.to(h_low.dtype.element_ty), mask=inside)


@triton.jit
def rnn_backward(dh, h_new, d_gates, d_low, hidden, RELU: tl.constexpr, ADD_PRODUCT: tl.constexpr,
                 BLOCK: tl.constexpr):
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    d_h = tl.load(dh + row * hidden + columns, mask=inside, other=0.0)
    out = tl.load(h_new + row * hidden + columns, mask=inside, other=0.0)
    if RELU:
        d_pre = tl.where(out > 0, d_h, 0.0)                                # d(·) = dh ⊙ relu'(·)
    else:
        d_pre = d_h * (1 - out * out)                                      # d(·) = dh ⊙ (1 − h'²)
    store_gradient(d_gates + row * hidden + columns, d_low + row * hidden + columns, 0, d_pre, inside, ADD_PRODUCT)


class TritonRNNKernel(RNNKernel):
    """`RNNStep.step` in one Triton kernel each way."""

    adds_product = True

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        rows, hidden = step.h_new.shape
        adds = step.product is not None
        rnn_forward[grid(rows, hidden)](
            step.gates, step.product if adds else step.gates, step.h_new, step.h_low if adds else step.h_new, hidden,
            RELU=self.cell.nonlinearity == "relu", ADD_PRODUCT=adds, BLOCK=block_size(hidden),
        )

    def backward(self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights) -> None:
        rows, hidden = step.h_new.shape
        adds = grads.d_low is not None
        rnn_backward[grid(rows, hidden)](
            dh.contiguous(), step.h_new, grads.d_gates, grads.d_low if adds else grads.d_gates, hidden,
            RELU=self.cell.nonlinearity == "relu", ADD_PRODUCT=adds, BLOCK=block_size(hidden),
        )


@triton.jit
def gru_forward(gates, rec, h, h_new, hidden, BLOCK: tl.constexpr):
    """`gates` holds W_ih x + b_ih, `rec` W_hh h + b_hh; `gates` becomes r, z, n."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    gate_row = gates + row * 3 * hidden + columns
    rec_row = rec + row * 3 * hidden + columns
    r = tl.sigmoid(tl.load(gate_row, mask=inside, other=0.0) + tl.load(rec_row, mask=inside, other=0.0))
    z = tl.sigmoid(                                                        # r, z = σ(·)
        tl.load(gate_row + hidden, mask=inside, other=0.0) + tl.load(rec_row + hidden, mask=inside, other=0.0)
    )
    rec_n = tl.load(rec_row + 2 * hidden, mask=inside, other=0.0)
    n = tanh(tl.load(gate_row + 2 * hidden, mask=inside, other=0.0) + r * rec_n)  # n = tanh(x_n + r ⊙ h_n)
    h_prev = tl.load(h + row * hidden + columns, mask=inside, other=0.0)
    tl.store(h_new + row * hidden + columns, n + z * (h_prev - n), mask=inside)  # h' = n + z ⊙ (h − n)
    tl.store(gate_row, r, mask=inside)
    tl.store(gate_row + hidden, z, mask=inside)
    tl.store(gate_row + 2 * hidden, n, mask=inside)


@triton.jit
def gru_backward(dh, gates, rec, h, d_gates, d_rec, direct, hidden, BLOCK: tl.constexpr):
    """The forward lines in reverse; `direct` gets d loss / d h through z ⊙ h."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    state = row * hidden + columns
    gate_row = gates + row * 3 * hidden + columns
    d_gate_row = d_gates + row * 3 * hidden + columns
    d_rec_row = d_rec + row * 3 * hidden + columns
    d_h = tl.load(dh + state, mask=inside, other=0.0)
    r = tl.load(gate_row, mask=inside, other=0.0)
    z = tl.load(gate_row + hidden, mask=inside, other=0.0)
    n = tl.load(gate_row + 2 * hidden, mask=inside, other=0.0)
    h_prev = tl.load(h + state, mask=inside, other=0.0)
    d_z = d_h * (h_prev - n) * z * (1 - z)                                 # h' = n + z ⊙ (h − n)
    d_n = d_h * (1 - z) * (1 - n * n)                                      # n = tanh(x_n + r ⊙ h_n)
    rec_n = tl.load(rec + row * 3 * hidden + 2 * hidden + columns, mask=inside, other=0.0)
    d_r = d_n * rec_n * r * (1 - r)                                        # r = σ(·)
    tl.store(d_gate_row, d_r, mask=inside)
    tl.store(d_gate_row + hidden, d_z, mask=inside)
    tl.store(d_gate_row + 2 * hidden, d_n, mask=inside)
    tl.store(d_rec_row, d_r, mask=inside)
    tl.store(d_rec_row + hidden, d_z, mask=inside)
    tl.store(d_rec_row + 2 * hidden, d_n * r, mask=inside)
    tl.store(direct + state, d_h * z, mask=inside)


class TritonGRUKernel(GRUKernel):
    """`GRUStep.step` in one Triton kernel each way."""

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        rows, hidden = step.h_new.shape
        gru_forward[grid(rows, hidden)](step.gates, step.rec, step.h, step.h_new, hidden, BLOCK=block_size(hidden))

    def backward(self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights) -> Tensor:
        rows, hidden = step.h_new.shape
        direct = torch.empty_like(step.h_new)
        gru_backward[grid(rows, hidden)](
            dh.contiguous(), step.gates, step.rec, step.h, grads.d_gates, grads.d_rec, direct, hidden,
            BLOCK=block_size(hidden),
        )
        return direct
