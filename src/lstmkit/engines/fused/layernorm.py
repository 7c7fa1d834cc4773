"""The fused step of the LayerNorm LSTM."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells import LayerWeights
from lstmkit.cells.layernorm import LAYER_NORM_EPS
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep, four_blocks
from lstmkit.engines.fused.products import Products


class LayerNormKernel(FusedKernel):
    """`LayerNormLSTMStep.step` in place; the recurrent projection comes raw, as its LN needs
    W_hh h before the shift b_hh."""

    recurrence = "raw"

    def tape(self, hidden_size: int) -> dict[str, int]:
        return {
            "rec_mean": 1, "rec_rstd": 1,              # statistics of LN(W_hh h)
            "cell_mean": 1, "cell_rstd": 1,            # statistics of LN(c')
            "tanh_ln_c": hidden_size,                  # tanh(LN(c'))
        }

    def grad_tape(self, hidden_size: int) -> dict[str, int]:
        return {"d_ln_c": hidden_size}                 # d loss / d LN(c'), for LN(c')'s gain

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        return four_blocks(hidden_size)

    def project_input(self, x: Tensor, weights: LayerWeights, products: Products) -> tuple[Tensor, tuple]:
        """LN(W_ih x) for all steps, keeping W_ih x and its statistics."""
        projection = products(x, weights.weight_ih.t()).to(products.state)
        gain = weights.extra["layernorm_ih_weight"]
        normalised, mean, rstd = aten.native_layer_norm(projection, gain.shape, gain, weights.bias_ih, LAYER_NORM_EPS)
        return normalised, (projection, mean, rstd)

    def input_backward(
        self, d_gates: Tensor, saved: tuple, weights: LayerWeights
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Backward of LN(W_ih x) over all steps at once: d(W_ih x), d gain, d bias_ih. The
        allocating op, not its `.out` form, which computes the same into temporaries and copies
        them (2.2 against 4.5 ms at 3200 × 1024, one thread)."""
        projection, mean, rstd = saved
        gain = weights.extra["layernorm_ih_weight"]
        has_shift = weights.bias_ih is not None
        d_projection, d_gain, d_shift = aten.native_layer_norm_backward(
            d_gates, projection, gain.shape, mean, rstd, gain, weights.bias_ih, [True, True, has_shift]
        )
        grads = {"layernorm_ih_weight": d_gain}
        if has_shift:
            grads["bias_ih"] = d_shift
        return d_projection, grads

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """`step`'s equations in place; `step.rec` holds W_hh h."""
        tape = step.tape
        gain = weights.extra["layernorm_hh_weight"]
        normalised_rec = layer_norm(step.rec, gain, weights.bias_hh, tape["rec_mean"], tape["rec_rstd"])
        step.gates.add_(normalised_rec)                                    # (·) = LN(W_ih x) + LN(W_hh h)
        i, f, g, o = (step.blocks[block] for block in "ifgo")
        step.blocks["if"].sigmoid_()                                       # i, f = σ(·)
        g.tanh_()                                                          # g = tanh(·)
        o.sigmoid_()                                                       # o = σ(·)
        torch.mul(f, step.c, out=step.c_new)                               # c' = f ⊙ c + i ⊙ g
        step.c_new.addcmul_(i, g)
        normalised_c = layer_norm(                                         # h' = o ⊙ tanh(LN(c'))
            step.c_new, weights.extra["layernorm_cell_weight"], weights.extra.get("layernorm_cell_bias"),
            tape["cell_mean"], tape["cell_rstd"],
        )
        torch.tanh(normalised_c, out=tape["tanh_ln_c"])
        torch.mul(o, tape["tanh_ln_c"], out=step.h_new)

    def backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        tape = step.tape
        i, f, g, o = (step.blocks[block] for block in "ifgo")
        d_i, d_f, d_g, d_o = (grads.blocks[block] for block in "ifgo")
        torch.mul(dh, tape["tanh_ln_c"], out=d_o)                          # h' = o ⊙ tanh(LN(c'))
        d_ln_c = grads.tape["d_ln_c"]
        aten.tanh_backward.grad_input(dh * o, tape["tanh_ln_c"], grad_input=d_ln_c)
        cell_gain = weights.extra["layernorm_cell_weight"]
        dc.add_(aten.native_layer_norm_backward(
            d_ln_c, step.c_new, cell_gain.shape, tape["cell_mean"], tape["cell_rstd"], cell_gain, None,
            [True, False, False],
        )[0])
        torch.mul(dc, g, out=d_i)                                          # c' = f ⊙ c + i ⊙ g
        torch.mul(dc, i, out=d_g)
        torch.mul(dc, step.c, out=d_f)
        dc.mul_(f)
        aten.sigmoid_backward.grad_input(d_o, o, grad_input=d_o)           # o = σ(·)
        aten.tanh_backward.grad_input(d_g, g, grad_input=d_g)              # g = tanh(·)
        d_input_forget = grads.blocks["if"]                                # i, f = σ(·)
        aten.sigmoid_backward.grad_input(d_input_forget, step.blocks["if"], grad_input=d_input_forget)
        rec_gain = weights.extra["layernorm_hh_weight"]                    # (·) = LN(W_ih x) + LN(W_hh h)
        grads.d_rec.copy_(aten.native_layer_norm_backward(
            grads.d_gates, step.rec, rec_gain.shape, tape["rec_mean"], tape["rec_rstd"], rec_gain, None,
            [True, False, False],
        )[0])

    def parameter_grads(
        self,
        grads: FusedGrads,
        rec: Tensor | None,
        cells: Tensor,
        new_cells: Tensor,
        tape: dict[str, Tensor],
        weights: LayerWeights,
    ) -> dict[str, Tensor]:
        """The gains and shifts of LN(W_hh h) and LN(c'), over all steps at once (those of
        LN(W_ih x) come from input_backward)."""
        rec_gain, cell_gain = weights.extra["layernorm_hh_weight"], weights.extra["layernorm_cell_weight"]
        cell_shift = weights.extra.get("layernorm_cell_bias")
        rows = {name: tape[name].flatten(0, -2) for name in ("rec_mean", "rec_rstd", "cell_mean", "cell_rstd")}
        _, d_rec_gain, d_rec_shift = aten.native_layer_norm_backward(
            grads.d_gates.flatten(0, -2), rec.flatten(0, -2), rec_gain.shape, rows["rec_mean"], rows["rec_rstd"],
            rec_gain, weights.bias_hh, [False, True, weights.bias_hh is not None],
        )
        _, d_cell_gain, d_cell_shift = aten.native_layer_norm_backward(
            grads.tape["d_ln_c"].flatten(0, -2), new_cells.flatten(0, -2), cell_gain.shape, rows["cell_mean"],
            rows["cell_rstd"], cell_gain, cell_shift, [False, True, cell_shift is not None],
        )
        grads = {"layernorm_hh_weight": d_rec_gain, "layernorm_cell_weight": d_cell_gain}
        if weights.bias_hh is not None:
            grads["bias_hh"] = d_rec_shift
        if cell_shift is not None:
            grads["layernorm_cell_bias"] = d_cell_shift
        return grads


def layer_norm(x: Tensor, gain: Tensor, shift: Tensor | None, mean: Tensor, rstd: Tensor) -> Tensor:
    """LN(x) over the last dimension, its statistics copied into `mean` and `rstd`. The allocating
    op and two small copies: `native_layer_norm.out` computes into temporaries and copies all three
    outputs, 40–60 % slower at B 32–64, H 256–512."""
    normalised, row_mean, row_rstd = aten.native_layer_norm(x, gain.shape, gain, shift, LAYER_NORM_EPS)
    mean.copy_(row_mean)
    rstd.copy_(row_rstd)
    return normalised
