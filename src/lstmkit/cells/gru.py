"""The gated recurrent unit, exactly as torch.nn.GRU computes it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.cells.base import Cell, LayerWeights


@dataclass(frozen=True)
class GRUStep(Cell):
    """GRU (Cho et al. 2014) in torch.nn.GRU's (and cuDNN's) formulation: the reset gate scales
    the recurrent product, `r ⊙ (W_hn h + b_hn)`, where Cho et al. reset the state before it,
    `U (r ⊙ h)`: another function, not only another place for the bias."""

    name = "gru"
    weight_blocks = ("r", "z", "n")
    has_cell_state = False
    supports_projection = False
    trace_names = ("reset", "update", "candidate")

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
