"""The fused step of the Elman RNN."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells import LayerWeights
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep


class RNNKernel(FusedKernel):
    """`RNNStep.step` in place."""

    reads_h_new = True  # the derivative of tanh (ReLU) is read off h'

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """h' = act(·), written straight into h_new."""
        if self.cell.nonlinearity == "tanh":
            torch.tanh(step.gates, out=step.h_new)
        else:
            torch.clamp(step.gates, min=0, out=step.h_new)

    def backward(
        self, dh: Tensor, dc: None, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """d(·) = dh ⊙ act'(·), act' read off the output h'."""
        if self.cell.nonlinearity == "tanh":
            aten.tanh_backward.grad_input(dh, step.h_new, grad_input=grads.d_gates)
        else:
            aten.threshold_backward.grad_input(dh, step.h_new, 0, grad_input=grads.d_gates)
