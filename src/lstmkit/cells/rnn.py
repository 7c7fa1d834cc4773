"""The Elman RNN, exactly as torch.nn.RNN computes it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.cells.base import Cell, LayerWeights

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


@dataclass(frozen=True)
class RNNStep(Cell):
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
