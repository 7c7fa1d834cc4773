"""The Elman RNN, exactly as torch.nn.RNN computes it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells.base import Cell, FusedGrads, FusedStep, LayerWeights

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


@dataclass(frozen=True)
class RNNCell(Cell):
    """Elman RNN (Elman 1990): no gates, G = 1. Option `nonlinearity`: "tanh" or "relu"."""

    name = "rnn"
    weight_blocks = ("h",)
    has_cell_state = False
    supports_projection = False
    nonlinearity: str = "tanh"

    def __post_init__(self) -> None:
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"cell 'rnn' option nonlinearity must be one of {sorted(NONLINEARITIES)}, "
                f"got {self.nonlinearity!r}"
            )

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, None, tuple[Tensor, ...]]:
        """One Elman step, act ∈ {tanh, relu}:

            h' = act(W_ih x + b_ih + W_hh h + b_hh)
        """
        return NONLINEARITIES[self.nonlinearity](x_proj + h_proj), None, ()

    def fused_forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """h' = act(·), written straight into h_new."""
        if self.nonlinearity == "tanh":
            torch.tanh(step.gates, out=step.h_new)
        else:
            torch.clamp(step.gates, min=0, out=step.h_new)

    def fused_backward(
        self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """d(·) = dh ⊙ act'(·), act' read off the output h'."""
        if self.nonlinearity == "tanh":
            aten.tanh_backward.grad_input(dh, step.h_new, grad_input=grads.d_gates)
        else:
            aten.threshold_backward.grad_input(dh, step.h_new, 0, grad_input=grads.d_gates)
