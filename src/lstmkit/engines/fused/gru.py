"""The fused step of the GRU."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells import LayerWeights
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep, gate_blocks


class GRUKernel(FusedKernel):
    """`GRUStep.step` in place; the recurrent projection comes apart from the input's, as
    r multiplies only its n block."""

    recurrence = "biased"

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        """r, z, n, and r and z together ("rz", one sigmoid call)."""
        return {**gate_blocks("rzn", hidden_size), "rz": slice(0, 2 * hidden_size)}

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """`step`'s equations in place, with h' = (1 − z) ⊙ n + z ⊙ h = n + z ⊙ (h − n)."""
        hidden = step.h.shape[-1]
        r, z, n = (step.blocks[block] for block in "rzn")
        step.blocks["rz"].add_(step.rec[:, : 2 * hidden]).sigmoid_()      # r, z = σ(·)
        n.addcmul_(r, step.rec[:, 2 * hidden :]).tanh_()                   # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        torch.addcmul(n, z, step.h - n, out=step.h_new)                    # h' = n + z ⊙ (h − n)

    def backward(
        self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> Tensor:
        """The forward lines in reverse, each differentiated; returns dh through z ⊙ h."""
        hidden = step.h.shape[-1]
        r, z, n = (step.blocks[block] for block in "rzn")
        d_r, d_z, d_n = (grads.blocks[block] for block in "rzn")
        torch.mul(dh, step.h - n, out=d_z)                                 # h' = n + z ⊙ (h − n)
        torch.mul(dh, 1 - z, out=d_n)
        direct = dh * z
        aten.tanh_backward.grad_input(d_n, n, grad_input=d_n)              # n = tanh(x_n + r ⊙ h_n)
        torch.mul(d_n, r, out=grads.d_rec[:, 2 * hidden :])
        torch.mul(d_n, step.rec[:, 2 * hidden :], out=d_r)
        reset_update = grads.blocks["rz"]                                  # r, z = σ(·)
        aten.sigmoid_backward.grad_input(reset_update, step.blocks["rz"], grad_input=reset_update)
        grads.d_rec[:, : 2 * hidden].copy_(reset_update)
        return direct
