"""The LayerNorm LSTM's step as one Triton kernel each way: one program per row, since both
layer norms reduce over a whole row (LN(W_hh h) over 4H features, LN(c') over H)."""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from lstmkit.cells import LayerWeights
from lstmkit.cells.layernorm import LAYER_NORM_EPS
from lstmkit.engines.fused import FusedGrads, FusedStep, LayerNormKernel
from lstmkit.engines.triton.launch import (
    IndexesItsGates, Refilling, launch, read_dh, recurrent_projection, store_gradient, tanh, whole_rows,
)

# LayerNorm's ε as 1 / EPS_RECIPROCAL, divided in the rows' dtype: a float argument or literal
# would be a float32 value, off from float64's 1e-5 by 2.5e-13, which 1 / √(σ² + ε) shows in
# the tenth digit when σ² is small.
EPS_RECIPROCAL = tl.constexpr(round(1 / LAYER_NORM_EPS))
assert 1 / EPS_RECIPROCAL.value == LAYER_NORM_EPS


def has_cell_shift(weights: LayerWeights) -> bool:
    """Whether the cell output's norm has a shift: one set to None (its key kept) has none."""
    return weights.extra.get("layernorm_cell_bias") is not None


@triton.jit
def layernorm_forward(
    gates, rec, product, c, c_new, h_new, h_low, rec_mean, rec_rstd, cell_mean, cell_rstd,
    rec_gain, rec_shift, cell_gain, cell_shift, hidden, HAS_REC_SHIFT: tl.constexpr, HAS_CELL_SHIFT: tl.constexpr,
    ADD_PRODUCT: tl.constexpr, BLOCK: tl.constexpr,
):
    """`gates` holds LN(W_ih x) and becomes i, f, g, o; `rec` holds W_hh h, or, with
    ADD_PRODUCT, receives it from `product` in the compute dtype (and h' goes into `h_low` in
    that dtype too). tanh(LN(c')) is not kept: backward computes it again from c' and its
    statistics."""
    row = tl.program_id(0)
    columns = tl.arange(0, BLOCK)
    inside = columns < hidden
    width = 4 * hidden
    gate_row = gates + row * width + columns
    rec_row = rec + row * width + columns
    product_row = product + row * width + columns                          # LN(W_hh h): statistics
    rec_i = recurrent_projection(rec_row, product_row, rec_row, 0, inside, ADD_PRODUCT, False, True)
    rec_f = recurrent_projection(rec_row, product_row, rec_row, hidden, inside, ADD_PRODUCT, False, True)
    rec_g = recurrent_projection(rec_row, product_row, rec_row, 2 * hidden, inside, ADD_PRODUCT, False, True)
    rec_o = recurrent_projection(rec_row, product_row, rec_row, 3 * hidden, inside, ADD_PRODUCT, False, True)
    mean = (tl.sum(rec_i, 0) + tl.sum(rec_f, 0) + tl.sum(rec_g, 0) + tl.sum(rec_o, 0)) / width
    rec_i = tl.where(inside, rec_i - mean, 0.0)
    rec_f = tl.where(inside, rec_f - mean, 0.0)
    rec_g = tl.where(inside, rec_g - mean, 0.0)
    rec_o = tl.where(inside, rec_o - mean, 0.0)
    variance = (tl.sum(rec_i * rec_i, 0) + tl.sum(rec_f * rec_f, 0) + tl.sum(rec_g * rec_g, 0)
                + tl.sum(rec_o * rec_o, 0)) / width
    eps = (variance * 0 + 1) / EPS_RECIPROCAL                             # in the rows' dtype
    rstd = 1 / tl.sqrt(variance + eps)
    tl.store(rec_mean + row, mean)
    tl.store(rec_rstd + row, rstd)
    pre_i = rec_i * rstd * tl.load(rec_gain + columns, mask=inside, other=0.0)
    pre_f = rec_f * rstd * tl.load(rec_gain + hidden + columns, mask=inside, other=0.0)
    pre_g = rec_g * rstd * tl.load(rec_gain + 2 * hidden + columns, mask=inside, other=0.0)
    pre_o = rec_o * rstd * tl.load(rec_gain + 3 * hidden + columns, mask=inside, other=0.0)
    if HAS_REC_SHIFT:
        pre_i += tl.load(rec_shift + columns, mask=inside, other=0.0)
        pre_f += tl.load(rec_shift + hidden + columns, mask=inside, other=0.0)
        pre_g += tl.load(rec_shift + 2 * hidden + columns, mask=inside, other=0.0)
        pre_o += tl.load(rec_shift + 3 * hidden + columns, mask=inside, other=0.0)
    i = tl.sigmoid(tl.load(gate_row, mask=inside, other=0.0) + pre_i)     # (·) = LN(W_ih x) + LN(W_hh h)
    f = tl.sigmoid(tl.load(gate_row + hidden, mask=inside, other=0.0) + pre_f)  # i, f, o = σ(·)
    g = tanh(tl.load(gate_row + 2 * hidden, mask=inside, other=0.0) + pre_g)    # g = tanh(·)
    o = tl.sigmoid(tl.load(gate_row + 3 * hidden, mask=inside, other=0.0) + pre_o)
    tl.store(gate_row, i, mask=inside)
    tl.store(gate_row + hidden, f, mask=inside)
    tl.store(gate_row + 2 * hidden, g, mask=inside)
    tl.store(gate_row + 3 * hidden, o, mask=inside)
    state = row * hidden + columns
    cell = f * tl.load(c + state, mask=inside, other=0.0) + i * g          # c' = f ⊙ c + i ⊙ g
    tl.store(c_new + state, cell, mask=inside)
    cell_average = tl.sum(tl.where(inside, cell, 0.0), 0) / hidden         # h' = o ⊙ tanh(LN(c'))
    centred = tl.where(inside, cell - cell_average, 0.0)
    cell_r = 1 / tl.sqrt(tl.sum(centred * centred, 0) / hidden + eps)
    tl.store(cell_mean + row, cell_average)
    tl.store(cell_rstd + row, cell_r)
    normalised = centred * cell_r * tl.load(cell_gain + columns, mask=inside, other=0.0)
    if HAS_CELL_SHIFT:
        normalised += tl.load(cell_shift + columns, mask=inside, other=0.0)
    squashed = tanh(normalised)
    out = o * squashed
    tl.store(h_new + state, out, mask=inside)
    if ADD_PRODUCT:
        tl.store(h_low + state, out.to(h_low.dtype.element_ty), mask=inside)


@triton.jit
def layernorm_backward(
    dh, refill, dc, dc_out, gates, rec, c, c_new, rec_mean, rec_rstd, cell_mean, cell_rstd,
    rec_gain, cell_gain, cell_shift, d_gates, d_rec, d_low, d_ln_c, hidden, HAS_CELL_SHIFT: tl.constexpr,
    ADD_PRODUCT: tl.constexpr, REFILL: tl.constexpr, BLOCK: tl.constexpr,
):
    """The forward lines in reverse, each differentiated; d loss / d c goes into `dc_out`
    (dc itself in the layer's loop). With ADD_PRODUCT, d rec goes into `d_low` in the compute
    dtype too; with REFILL, dh starts over from `refill` once read (`read_dh`)."""
    row = tl.program_id(0)
    columns = tl.arange(0, BLOCK)
    inside = columns < hidden
    width = 4 * hidden
    state = row * hidden + columns
    gate_row = gates + row * width + columns
    d_gate_row = d_gates + row * width + columns
    i = tl.load(gate_row, mask=inside, other=0.0)
    f = tl.load(gate_row + hidden, mask=inside, other=0.0)
    g = tl.load(gate_row + 2 * hidden, mask=inside, other=0.0)
    o = tl.load(gate_row + 3 * hidden, mask=inside, other=0.0)
    d_h = read_dh(dh, refill, state, inside, REFILL)
    cell_r = tl.load(cell_rstd + row)
    centred = tl.load(c_new + state, mask=inside, other=0.0) - tl.load(cell_mean + row)  # LN(c'), over H
    cell_hat = tl.where(inside, centred * cell_r, 0.0)
    normalised = cell_hat * tl.load(cell_gain + columns, mask=inside, other=0.0)
    if HAS_CELL_SHIFT:
        normalised += tl.load(cell_shift + columns, mask=inside, other=0.0)
    squashed = tanh(normalised)                                            # tanh(LN(c')) again, not kept
    d_o = d_h * squashed * o * (1 - o)                                     # h' = o ⊙ tanh(LN(c'))
    d_normalised = d_h * o * (1 - squashed * squashed)
    tl.store(d_ln_c + state, d_normalised, mask=inside)
    d_hat = tl.where(inside, d_normalised * tl.load(cell_gain + columns, mask=inside, other=0.0), 0.0)
    d_cell = cell_r * (d_hat - tl.sum(d_hat, 0) / hidden - cell_hat * tl.sum(d_hat * cell_hat, 0) / hidden)
    d_c = tl.load(dc + state, mask=inside, other=0.0) + d_cell
    c_prev = tl.load(c + state, mask=inside, other=0.0)
    d_i = d_c * g * i * (1 - i)                                            # c' = f ⊙ c + i ⊙ g
    d_f = d_c * c_prev * f * (1 - f)
    d_g = d_c * i * (1 - g * g)
    tl.store(dc_out + state, d_c * f, mask=inside)
    tl.store(d_gate_row, d_i, mask=inside)
    tl.store(d_gate_row + hidden, d_f, mask=inside)
    tl.store(d_gate_row + 2 * hidden, d_g, mask=inside)
    tl.store(d_gate_row + 3 * hidden, d_o, mask=inside)
    rec_row = rec + row * width + columns                                  # LN(W_hh h), over 4H
    mean, rstd = tl.load(rec_mean + row), tl.load(rec_rstd + row)
    hat_i = tl.where(inside, (tl.load(rec_row, mask=inside, other=0.0) - mean) * rstd, 0.0)
    hat_f = tl.where(inside, (tl.load(rec_row + hidden, mask=inside, other=0.0) - mean) * rstd, 0.0)
    hat_g = tl.where(inside, (tl.load(rec_row + 2 * hidden, mask=inside, other=0.0) - mean) * rstd, 0.0)
    hat_o = tl.where(inside, (tl.load(rec_row + 3 * hidden, mask=inside, other=0.0) - mean) * rstd, 0.0)
    dy_i = tl.where(inside, d_i * tl.load(rec_gain + columns, mask=inside, other=0.0), 0.0)
    dy_f = tl.where(inside, d_f * tl.load(rec_gain + hidden + columns, mask=inside, other=0.0), 0.0)
    dy_g = tl.where(inside, d_g * tl.load(rec_gain + 2 * hidden + columns, mask=inside, other=0.0), 0.0)
    dy_o = tl.where(inside, d_o * tl.load(rec_gain + 3 * hidden + columns, mask=inside, other=0.0), 0.0)
    mean_dy = (tl.sum(dy_i, 0) + tl.sum(dy_f, 0) + tl.sum(dy_g, 0) + tl.sum(dy_o, 0)) / width
    mean_dy_hat = (tl.sum(dy_i * hat_i, 0) + tl.sum(dy_f * hat_f, 0) + tl.sum(dy_g * hat_g, 0)
                   + tl.sum(dy_o * hat_o, 0)) / width
    d_rec_row = d_rec + row * width + columns
    d_low_row = d_low + row * width + columns
    store_gradient(d_rec_row, d_low_row, 0, rstd * (dy_i - mean_dy - hat_i * mean_dy_hat), inside, ADD_PRODUCT)
    store_gradient(d_rec_row, d_low_row, hidden, rstd * (dy_f - mean_dy - hat_f * mean_dy_hat), inside, ADD_PRODUCT)
    store_gradient(
        d_rec_row, d_low_row, 2 * hidden, rstd * (dy_g - mean_dy - hat_g * mean_dy_hat), inside, ADD_PRODUCT
    )
    store_gradient(
        d_rec_row, d_low_row, 3 * hidden, rstd * (dy_o - mean_dy - hat_o * mean_dy_hat), inside, ADD_PRODUCT
    )


class TritonLayerNormKernel(Refilling, IndexesItsGates, LayerNormKernel):
    """`LayerNormLSTMStep.step` in one Triton kernel each way."""

    adds_product = True

    def tape(self, hidden_size: int) -> dict[str, int]:
        """LayerNormKernel's, but tanh(LN(c')), which the backward kernel computes again."""
        return {name: size for name, size in super().tape(hidden_size).items() if name != "tanh_ln_c"}

    @staticmethod
    def norms(weights: LayerWeights, fallback: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The gains and shifts of LN(W_hh h) and LN(c') as the kernels read them (contiguous),
        `fallback` for the shifts without biases."""
        extra = weights.extra
        return tuple(
            fallback if tensor is None else tensor.contiguous() for tensor in (
                extra["layernorm_hh_weight"], weights.bias_hh, extra["layernorm_cell_weight"],
                extra.get("layernorm_cell_bias"),
            )
        )

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        rows, hidden = step.c.shape
        tape = step.tape
        adds = step.product is not None
        layout = whole_rows(rows, hidden)
        launch(
            layernorm_forward, layout,
            step.gates, step.rec, step.product if adds else step.rec, step.c, step.c_new, step.h_new,
            step.h_low if adds else step.h_new, tape["rec_mean"], tape["rec_rstd"],
            tape["cell_mean"], tape["cell_rstd"], *self.norms(weights, step.c), hidden,
            HAS_REC_SHIFT=weights.bias_hh is not None, HAS_CELL_SHIFT=has_cell_shift(weights), ADD_PRODUCT=adds,
        )

    def backward(self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights) -> None:
        rows, hidden = step.c.shape
        tape = step.tape
        adds = grads.d_low is not None
        dh, refill, refilling = self.refill_arguments(dh, grads)
        dc, dc_out = self.dc_arguments(dc, grads)
        rec_gain, _, cell_gain, cell_shift = self.norms(weights, step.c)
        layout = whole_rows(rows, hidden)
        launch(
            layernorm_backward, layout,
            dh, refill, dc, dc_out, step.gates, step.rec, step.c, step.c_new, tape["rec_mean"],
            tape["rec_rstd"], tape["cell_mean"], tape["cell_rstd"], rec_gain, cell_gain, cell_shift,
            grads.d_gates, grads.d_rec,
            grads.d_low if adds else grads.d_rec, grads.tape["d_ln_c"], hidden,
            HAS_CELL_SHIFT=has_cell_shift(weights), ADD_PRODUCT=adds, **refilling,
        )
