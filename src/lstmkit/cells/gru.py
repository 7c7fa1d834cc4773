"""The gated recurrent unit, exactly as torch.nn.GRU computes it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells.base import Cell, FusedGrads, FusedStep, LayerWeights


@dataclass(frozen=True)
class GRUCell(Cell):
    """GRU (Cho et al. 2014) in torch.nn.GRU's formulation: `b_hn` sits inside the reset term."""

    name = "gru"
    weight_blocks = ("r", "z", "n")
    has_cell_state = False
    supports_projection = False
    trace_names = ("reset", "update", "candidate")
    fused_recurrence = "biased"

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, None, tuple[Tensor, ...]]:
        """One GRU step; `(·)` is `W_i* x + b_i* + W_h* h + b_h*` for that gate.

            r  = σ(·)
            z  = σ(·)
            n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
            h' = (1 − z) ⊙ n + z ⊙ h
        """
        x_r, x_z, x_n = x_proj.chunk(3, -1)
        h_r, h_z, h_n = h_proj.chunk(3, -1)
        reset_gate = torch.sigmoid(x_r + h_r)
        update_gate = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset_gate * h_n)
        h_new = (1 - update_gate) * candidate + update_gate * h
        return h_new, None, (reset_gate, update_gate, candidate)

    def fused_forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """`step`'s equations in place, with h' = (1 − z) ⊙ n + z ⊙ h = n + z ⊙ (h − n)."""
        hidden = step.h.shape[-1]
        reset_update = step.gates[:, : 2 * hidden]
        reset_update.add_(step.rec[:, : 2 * hidden]).sigmoid_()           # r, z = σ(·)
        r, z, n = step.gates.chunk(3, -1)
        n.addcmul_(r, step.rec[:, 2 * hidden :]).tanh_()                   # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        torch.addcmul(n, z, step.h - n, out=step.h_new)                    # h' = n + z ⊙ (h − n)

    def fused_backward(
        self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> Tensor:
        """The forward lines in reverse, each differentiated; returns dh through z ⊙ h."""
        hidden = step.h.shape[-1]
        r, z, n = step.gates.chunk(3, -1)
        d_r, d_z, d_n = grads.d_gates.chunk(3, -1)
        torch.mul(dh, step.h - n, out=d_z)                                 # h' = n + z ⊙ (h − n)
        torch.mul(dh, 1 - z, out=d_n)
        direct = dh * z
        aten.tanh_backward.grad_input(d_n, n, grad_input=d_n)              # n = tanh(x_n + r ⊙ h_n)
        torch.mul(d_n, r, out=grads.d_rec[:, 2 * hidden :])
        torch.mul(d_n, step.rec[:, 2 * hidden :], out=d_r)
        reset_update = grads.d_gates[:, : 2 * hidden]                     # r, z = σ(·)
        aten.sigmoid_backward.grad_input(reset_update, step.gates[:, : 2 * hidden], grad_input=reset_update)
        grads.d_rec[:, : 2 * hidden].copy_(reset_update)
        return direct
