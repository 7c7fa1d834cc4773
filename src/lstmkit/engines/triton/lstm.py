"""The LSTM family's step as one Triton kernel each way: the LSTM with its ablations, peephole
and CIFG, chosen by compile-time flags. Same buffers and tape as the fused CPU kernels."""

from __future__ import annotations

from functools import cached_property

import triton
import triton.language as tl
from torch import Tensor

from lstmkit.cells import LayerWeights
from lstmkit.engines.fused import CIFGKernel, FusedGrads, FusedStep, LSTMKernel, PeepholeKernel
from lstmkit.engines.triton.launch import (
    IndexesItsGates, Refilling, launch, pre_activation, read_dh, split_rows, store_gradient, tanh,
)

ABSENT = -1  # the block position of a removed gate


@triton.jit
def lstm_forward(
    gates, product, c, c_new, h_new, h_low, peephole_i, peephole_f, peephole_o, hidden,
    POS_I: tl.constexpr, POS_F: tl.constexpr, POS_G: tl.constexpr, POS_O: tl.constexpr,
    COUPLED: tl.constexpr, PEEPHOLE: tl.constexpr, INPUT_ACTIVATION: tl.constexpr,
    OUTPUT_ACTIVATION: tl.constexpr, NUM_GATES: tl.constexpr, ADD_PRODUCT: tl.constexpr, BLOCK: tl.constexpr,
):
    """One row block: pre-activations in `gates` (plus `product`, W_hh h in the compute dtype,
    with ADD_PRODUCT) become activations; c' and h' (also into `h_low` in the compute dtype,
    with ADD_PRODUCT). tanh(c') is not kept: backward computes it again from c'."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    gate_row = gates + row * NUM_GATES * hidden + columns
    product_row = product + row * NUM_GATES * hidden + columns
    state = row * hidden + columns
    c_prev = tl.load(c + state, mask=inside, other=0.0)
    pre_g = pre_activation(gate_row, product_row, POS_G * hidden, inside, ADD_PRODUCT)
    if INPUT_ACTIVATION:
        g = tanh(pre_g)                                                    # g = tanh(·)
    else:
        g = pre_g
    tl.store(gate_row + POS_G * hidden, g, mask=inside)
    written = g
    kept = c_prev
    if POS_I >= 0:
        pre_i = pre_activation(gate_row, product_row, POS_I * hidden, inside, ADD_PRODUCT)
        if PEEPHOLE:
            pre_i += tl.load(peephole_i + columns, mask=inside, other=0.0) * c_prev
        i = tl.sigmoid(pre_i)                                              # i = σ(· [+ p_i ⊙ c])
        tl.store(gate_row + POS_I * hidden, i, mask=inside)
        written = i * g
        if COUPLED:
            kept = (1 - i) * c_prev                                        # f = 1 − i
    if POS_F >= 0:
        pre_f = pre_activation(gate_row, product_row, POS_F * hidden, inside, ADD_PRODUCT)
        if PEEPHOLE:
            pre_f += tl.load(peephole_f + columns, mask=inside, other=0.0) * c_prev
        f = tl.sigmoid(pre_f)                                              # f = σ(· [+ p_f ⊙ c])
        tl.store(gate_row + POS_F * hidden, f, mask=inside)
        kept = f * c_prev
    cell = kept + written                                                  # c' = f ⊙ c + i ⊙ g
    tl.store(c_new + state, cell, mask=inside)
    if OUTPUT_ACTIVATION:
        cell_out = tanh(cell)
    else:
        cell_out = cell
    if POS_O >= 0:
        pre_o = pre_activation(gate_row, product_row, POS_O * hidden, inside, ADD_PRODUCT)
        if PEEPHOLE:
            pre_o += tl.load(peephole_o + columns, mask=inside, other=0.0) * cell
        o = tl.sigmoid(pre_o)                                              # o = σ(· [+ p_o ⊙ c'])
        tl.store(gate_row + POS_O * hidden, o, mask=inside)
        cell_out = o * cell_out                                            # h' = o ⊙ tanh(c')
    tl.store(h_new + state, cell_out, mask=inside)
    if ADD_PRODUCT:
        tl.store(h_low + state, cell_out.to(h_low.dtype.element_ty), mask=inside)


@triton.jit
def lstm_backward(
    dh, refill, dc, dc_out, gates, c, c_new, d_gates, d_low, peephole_i, peephole_f, peephole_o, hidden,
    POS_I: tl.constexpr, POS_F: tl.constexpr, POS_G: tl.constexpr, POS_O: tl.constexpr,
    COUPLED: tl.constexpr, PEEPHOLE: tl.constexpr, INPUT_ACTIVATION: tl.constexpr,
    OUTPUT_ACTIVATION: tl.constexpr, NUM_GATES: tl.constexpr, ADD_PRODUCT: tl.constexpr, REFILL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The forward lines in reverse, each differentiated; d loss / d c goes into `dc_out`
    (dc itself in the layer's loop). With ADD_PRODUCT the gate gradients go into `d_low` in
    the compute dtype as well; with REFILL, dh starts over from `refill` once read (`read_dh`)."""
    row = tl.program_id(0)
    columns = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    inside = columns < hidden
    gate_row = gates + row * NUM_GATES * hidden + columns
    d_gate_row = d_gates + row * NUM_GATES * hidden + columns
    d_low_row = d_low + row * NUM_GATES * hidden + columns
    state = row * hidden + columns
    d_h = read_dh(dh, refill, state, inside, REFILL)
    d_c = tl.load(dc + state, mask=inside, other=0.0)
    c_prev = tl.load(c + state, mask=inside, other=0.0)
    cell_out = tl.load(c_new + state, mask=inside, other=0.0)
    if OUTPUT_ACTIVATION:
        cell_out = tanh(cell_out)                                          # tanh(c') again, not kept
    d_cell_out = d_h                                                       # h' = o ⊙ tanh(c')
    if POS_O >= 0:
        o = tl.load(gate_row + POS_O * hidden, mask=inside, other=0.0)
        d_cell_out = d_h * o
        d_o = d_h * cell_out * o * (1 - o)                                 #   do, through σ
        store_gradient(d_gate_row, d_low_row, POS_O * hidden, d_o, inside, ADD_PRODUCT)
    if OUTPUT_ACTIVATION:
        d_c += d_cell_out * (1 - cell_out * cell_out)
    else:
        d_c += d_cell_out
    if PEEPHOLE:
        d_c += d_o * tl.load(peephole_o + columns, mask=inside, other=0.0)  # o = σ(· + p_o ⊙ c')
    g = tl.load(gate_row + POS_G * hidden, mask=inside, other=0.0)
    d_g = d_c                                                              # c' = f ⊙ c + i ⊙ g
    d_c_prev = d_c
    if POS_I >= 0:
        i = tl.load(gate_row + POS_I * hidden, mask=inside, other=0.0)
        d_g = d_c * i
        if COUPLED:
            d_i = d_c * (g - c_prev) * i * (1 - i)                         #   c' = (1 − i) ⊙ c + i ⊙ g
            d_c_prev = d_c * (1 - i)
        else:
            d_i = d_c * g * i * (1 - i)
        store_gradient(d_gate_row, d_low_row, POS_I * hidden, d_i, inside, ADD_PRODUCT)
    if POS_F >= 0:
        f = tl.load(gate_row + POS_F * hidden, mask=inside, other=0.0)
        d_f = d_c * c_prev * f * (1 - f)
        store_gradient(d_gate_row, d_low_row, POS_F * hidden, d_f, inside, ADD_PRODUCT)
        d_c_prev = d_c * f
    if INPUT_ACTIVATION:
        d_g = d_g * (1 - g * g)                                            # g = tanh(·)
    store_gradient(d_gate_row, d_low_row, POS_G * hidden, d_g, inside, ADD_PRODUCT)
    if PEEPHOLE:                                                           # i, f = σ(· + p ⊙ c)
        d_c_prev += d_f * tl.load(peephole_f + columns, mask=inside, other=0.0)
        d_c_prev += d_i * tl.load(peephole_i + columns, mask=inside, other=0.0)
    tl.store(dc_out + state, d_c_prev, mask=inside)


class TritonLSTMFamily(Refilling, IndexesItsGates):
    """The forward and backward launches shared by the LSTM, peephole and CIFG kernels."""

    adds_product = True
    coupled = False
    peephole = False

    @cached_property
    def flags(self) -> dict:
        """The kernel's compile-time flags for this cell (made once: a launch is per step)."""
        blocks = self.cell.weight_blocks
        position = {block: blocks.index(block) if block in blocks else ABSENT for block in "ifgo"}
        return dict(
            POS_I=position["i"], POS_F=position["f"], POS_G=position["g"], POS_O=position["o"],
            COUPLED=self.coupled, PEEPHOLE=self.peephole,
            INPUT_ACTIVATION=getattr(self.cell, "input_activation", True),
            OUTPUT_ACTIVATION=getattr(self.cell, "output_activation", True),
            NUM_GATES=self.cell.num_gates,
        )

    def peepholes(self, weights: LayerWeights, fallback: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The peephole weights as the kernels read them (contiguous), or `fallback` thrice."""
        if not self.peephole:
            return fallback, fallback, fallback
        return tuple(weights.extra[name].contiguous() for name in ("peephole_i", "peephole_f", "peephole_o"))

    def tape(self, hidden_size: int) -> dict[str, int]:
        """Nothing beyond c': the backward kernel computes tanh(c') again, which costs it less
        than reading it back would, and spares a (T, B, H) buffer."""
        return {}

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        rows, hidden = step.c.shape
        adds = step.product is not None
        layout = split_rows(rows, hidden)
        launch(
            lstm_forward, layout,
            step.gates, step.product if adds else step.gates, step.c, step.c_new, step.h_new,
            step.h_low if adds else step.h_new, *self.peepholes(weights, step.c), hidden,
            ADD_PRODUCT=adds, **self.flags,
        )

    def backward(self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights) -> None:
        rows, hidden = step.c.shape
        adds = grads.d_low is not None
        dh, refill, refilling = self.refill_arguments(dh, grads)
        dc, dc_out = self.dc_arguments(dc, grads)
        layout = split_rows(rows, hidden)
        launch(
            lstm_backward, layout,
            dh, refill, dc, dc_out, step.gates, step.c, step.c_new, grads.d_gates,
            grads.d_low if adds else grads.d_gates, *self.peepholes(weights, step.c), hidden,
            ADD_PRODUCT=adds, **refilling, **self.flags,
        )


class TritonLSTMKernel(TritonLSTMFamily, LSTMKernel):
    """`LSTMStep.step` (with any ablation) in one Triton kernel each way."""


class TritonPeepholeKernel(TritonLSTMFamily, PeepholeKernel):
    """`PeepholeLSTMStep.step` in one Triton kernel each way."""

    peephole = True


class TritonCIFGKernel(TritonLSTMFamily, CIFGKernel):
    """`CIFGLSTMStep.step` in one Triton kernel each way."""

    coupled = True
