"""The Elman RNN's and the GRU's step as one Triton kernel each way."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from lstmkit.cells import LayerWeights
from lstmkit.engines.fused import FusedGrads, FusedStep, GRUKernel, RNNKernel
from lstmkit.engines.triton.launch import (
    IndexesItsGates, Refilling, launch, pre_activation, read_dh, recurrent_projection, split_rows, store_gradient,
    tanh,
)


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
        out = tl.where(pre < 0, 0.0, pre)                                  # h' = relu(·), NaN kept as torch's
    else:
        out = tanh(pre)                                                    # h' = tanh(·)
    tl.store(h_new + row * hidden + columns, out, mask=inside)
    if ADD_PRODUCT:
        tl.store(h_low + row * hidden + columns, out.to(h_low.dtype.element_ty), mask=inside)


@triton.jit
def rnn_backward(dh, refill, h_new, d_gates, d_low, hidden, RELU: tl.constexpr, ADD_PRODUCT: tl.constexpr,
                 REFILL: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    d_h = read_dh(dh, refill, row * hidden + columns, inside, REFILL)
    out = tl.load(h_new + row * hidden + columns, mask=inside, other=0.0)
    if RELU:
        d_pre = tl.where(out <= 0, 0.0, d_h)                               # d(·) = dh ⊙ relu'(·), NaN's dh kept
    else:
        d_pre = d_h * (1 - out * out)                                      # d(·) = dh ⊙ (1 − h'²)
    store_gradient(d_gates + row * hidden + columns, d_low + row * hidden + columns, 0, d_pre, inside, ADD_PRODUCT)


class TritonRNNKernel(Refilling, RNNKernel):
    """`RNNStep.step` in one Triton kernel each way."""

    adds_product = True

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        rows, hidden = step.h_new.shape
        adds = step.product is not None
        layout = split_rows(rows, hidden)
        launch(
            rnn_forward, layout,
            step.gates, step.product if adds else step.gates, step.h_new, step.h_low if adds else step.h_new, hidden,
            RELU=self.cell.nonlinearity == "relu", ADD_PRODUCT=adds,
        )

    def backward(self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights) -> None:
        rows, hidden = step.h_new.shape
        adds = grads.d_low is not None
        dh, refill, refilling = self.refill_arguments(dh, grads)
        layout = split_rows(rows, hidden)
        launch(
            rnn_backward, layout,
            dh, refill, step.h_new, grads.d_gates, grads.d_low if adds else grads.d_gates, hidden,
            RELU=self.cell.nonlinearity == "relu", ADD_PRODUCT=adds, **refilling,
        )


@triton.jit
def gru_forward(gates, rec, product, bias_hh, h, h_new, h_low, hidden, ADD_PRODUCT: tl.constexpr,
                HAS_BIAS: tl.constexpr, N_ONLY: tl.constexpr, BLOCK: tl.constexpr):
    """`gates` holds W_ih x + b_ih, `rec` W_hh h + b_hh; `gates` becomes r, z, n. With
    ADD_PRODUCT, `product` holds W_hh h in the compute dtype: rec = product + b_hh is formed
    here and kept in `rec` (with N_ONLY, a (·, H) `rec`: its n block alone, which backward
    reads), and h' goes into `h_low` in the compute dtype too."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    gate_row = gates + row * 3 * hidden + columns
    rec_row = rec + row * 3 * hidden + columns
    product_row = product + row * 3 * hidden + columns
    bias_row = bias_hh + columns                                           # rec = W_hh h + b_hh
    rec_r = recurrent_projection(rec_row, product_row, bias_row, 0, inside, ADD_PRODUCT, HAS_BIAS, not N_ONLY)
    rec_z = recurrent_projection(rec_row, product_row, bias_row, hidden, inside, ADD_PRODUCT, HAS_BIAS, not N_ONLY)
    rec_n = recurrent_projection(rec_row, product_row, bias_row, 2 * hidden, inside, ADD_PRODUCT, HAS_BIAS,
                                 not N_ONLY)
    if N_ONLY:
        tl.store(rec + row * hidden + columns, rec_n, mask=inside)
    r = tl.sigmoid(tl.load(gate_row, mask=inside, other=0.0) + rec_r)     # r, z = σ(·)
    z = tl.sigmoid(tl.load(gate_row + hidden, mask=inside, other=0.0) + rec_z)
    n = tanh(tl.load(gate_row + 2 * hidden, mask=inside, other=0.0) + r * rec_n)  # n = tanh(x_n + r ⊙ h_n)
    h_prev = tl.load(h + row * hidden + columns, mask=inside, other=0.0)
    out = n + z * (h_prev - n)                                             # h' = n + z ⊙ (h − n)
    tl.store(h_new + row * hidden + columns, out, mask=inside)
    if ADD_PRODUCT:
        tl.store(h_low + row * hidden + columns, out.to(h_low.dtype.element_ty), mask=inside)
    tl.store(gate_row, r, mask=inside)
    tl.store(gate_row + hidden, z, mask=inside)
    tl.store(gate_row + 2 * hidden, n, mask=inside)


@triton.jit
def gru_backward(dh, refill, gates, rec, h, d_gates, d_rec, d_low, direct, hidden, ADD_PRODUCT: tl.constexpr,
                 REFILL: tl.constexpr, N_ONLY: tl.constexpr, BLOCK: tl.constexpr):
    """The forward lines in reverse; d loss / d h through z ⊙ h goes into `direct`, or with
    REFILL into dh, after `refill`. With ADD_PRODUCT, d rec goes into `d_low` in the compute
    dtype too. With N_ONLY, `rec` is (·, H), the n block alone."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    state = row * hidden + columns
    gate_row = gates + row * 3 * hidden + columns
    d_gate_row = d_gates + row * 3 * hidden + columns
    d_rec_row = d_rec + row * 3 * hidden + columns
    d_low_row = d_low + row * 3 * hidden + columns
    d_h = tl.load(dh + state, mask=inside, other=0.0)
    r = tl.load(gate_row, mask=inside, other=0.0)
    z = tl.load(gate_row + hidden, mask=inside, other=0.0)
    n = tl.load(gate_row + 2 * hidden, mask=inside, other=0.0)
    h_prev = tl.load(h + state, mask=inside, other=0.0)
    d_z = d_h * (h_prev - n) * z * (1 - z)                                 # h' = n + z ⊙ (h − n)
    d_n = d_h * (1 - z) * (1 - n * n)                                      # n = tanh(x_n + r ⊙ h_n)
    if N_ONLY:
        rec_n = tl.load(rec + state, mask=inside, other=0.0)
    else:
        rec_n = tl.load(rec + row * 3 * hidden + 2 * hidden + columns, mask=inside, other=0.0)
    d_r = d_n * rec_n * r * (1 - r)                                        # r = σ(·)
    tl.store(d_gate_row, d_r, mask=inside)
    tl.store(d_gate_row + hidden, d_z, mask=inside)
    tl.store(d_gate_row + 2 * hidden, d_n, mask=inside)
    store_gradient(d_rec_row, d_low_row, 0, d_r, inside, ADD_PRODUCT)
    store_gradient(d_rec_row, d_low_row, hidden, d_z, inside, ADD_PRODUCT)
    store_gradient(d_rec_row, d_low_row, 2 * hidden, d_n * r, inside, ADD_PRODUCT)
    if REFILL:                                                             # h' = n + z ⊙ (h − n)
        tl.store(dh + state, tl.load(refill + state, mask=inside, other=0.0) + d_h * z, mask=inside)
    else:
        tl.store(direct + state, d_h * z, mask=inside)


class TritonGRUKernel(Refilling, IndexesItsGates, GRUKernel):
    """`GRUStep.step` in one Triton kernel each way."""

    adds_product = True

    def rec_size(self, hidden_size: int, forms_rec: bool) -> int:
        """Where the kernel forms rec from the product, it keeps its n block alone (W_hn h + b_hn,
        which backward reads; r's and z's only enter the forward): T × B × 2H values fewer under
        mixed precision."""
        return hidden_size if forms_rec else 3 * hidden_size

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        rows, hidden = step.h_new.shape
        adds = step.product is not None
        bias_hh = None if weights.bias_hh is None else weights.bias_hh.contiguous()  # read by index
        layout = split_rows(rows, hidden)
        launch(
            gru_forward, layout,
            step.gates, step.rec, step.product if adds else step.rec, step.rec if bias_hh is None else bias_hh,
            step.h, step.h_new, step.h_low if adds else step.h_new, hidden,
            ADD_PRODUCT=adds, HAS_BIAS=bias_hh is not None, N_ONLY=step.rec.shape[-1] == hidden,
        )

    def backward(
        self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> Tensor | None:
        rows, hidden = step.h.shape
        adds = grads.d_low is not None
        dh, refill, refilling = self.refill_arguments(dh, grads)
        direct = dh if refilling["REFILL"] else torch.empty_like(step.h)  # refilled: into dh, no direct term
        layout = split_rows(rows, hidden)
        launch(
            gru_backward, layout,
            dh, refill, step.gates, step.rec, step.h, grads.d_gates, grads.d_rec,
            grads.d_low if adds else grads.d_rec, direct, hidden, ADD_PRODUCT=adds,
            N_ONLY=step.rec.shape[-1] == hidden, **refilling,
        )
        return None if refilling["REFILL"] else direct
