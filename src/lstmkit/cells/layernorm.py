"""The LayerNorm LSTM of Ba, Kiros & Hinton (2016)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.cells.base import Cell, ExtraParameter, LayerWeights

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default


@dataclass(frozen=True)
class LayerNormLSTMStep(Cell):
    """LSTM with layer normalisation of both projections and of the cell output (Ba et al. 2016).

    `LN(z) = γ ⊙ (z − mean(z)) / sqrt(var(z) + 1e-5) + β` over the features of each row. The
    projections are normalised over all G·H features; their shifts β are the layer's biases
    (`bias_ih`, `bias_hh`), their gains `layernorm_ih_weight`, `layernorm_hh_weight` (G·H, init
    1). The cell output's LN has `layernorm_cell_weight` (H, init 1) and `layernorm_cell_bias`
    (H, init 0, only with `bias=True`). The cell state is carried un-normalised.
    """

    name = "layernorm"
    weight_blocks = ("i", "f", "g", "o")
    trace_names = ("input", "forget", "candidate", "output")
    extra_parameters = (
        ExtraParameter("layernorm_ih_weight", "gates", "ones"),
        ExtraParameter("layernorm_hh_weight", "gates", "ones"),
        ExtraParameter("layernorm_cell_weight", "hidden", "ones"),
        ExtraParameter("layernorm_cell_bias", "hidden", "zeros", is_bias=True),
    )

    @property
    def forget_bias_block(self) -> tuple[str, float]:
        return ("f", 1.0)

    def check_hidden_size(self, hidden_size: int) -> None:
        if hidden_size < 2:
            raise ValueError(
                "cell 'layernorm' needs hidden_size >= 2: LN(c') over a single feature always "
                f"equals its shift, so the cell state would never reach h; got hidden_size={hidden_size}"
            )

    def project_input(self, x: Tensor, weights: LayerWeights) -> Tensor:
        """LN(W_ih x), with gain `layernorm_ih_weight` and shift `bias_ih`."""
        projection = F.linear(x, weights.weight_ih)
        gain = weights.extra["layernorm_ih_weight"]
        return F.layer_norm(projection, gain.shape, gain, weights.bias_ih, LAYER_NORM_EPS)

    def project_hidden(self, h: Tensor, weights: LayerWeights) -> Tensor:
        """LN(W_hh h), with gain `layernorm_hh_weight` and shift `bias_hh`."""
        projection = F.linear(h, weights.weight_hh)
        gain = weights.extra["layernorm_hh_weight"]
        return F.layer_norm(projection, gain.shape, gain, weights.bias_hh, LAYER_NORM_EPS)

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """One LayerNorm LSTM step; `(·)` is that gate's block of `LN(W_ih x) + LN(W_hh h) + b`,
        with b = b_ih + b_hh (the shifts of the two LNs).

        i  = σ(·)
        f  = σ(·)
        g  = tanh(·)
        o  = σ(·)
        c' = f ⊙ c + i ⊙ g                 (carried un-normalised)
        h' = o ⊙ tanh(LN(c'))
        """
        pre_i, pre_f, pre_g, pre_o = (x_proj + h_proj).chunk(4, -1)
        input_gate = torch.sigmoid(pre_i)
        forget_gate = torch.sigmoid(pre_f)
        candidate = torch.tanh(pre_g)
        output_gate = torch.sigmoid(pre_o)
        c_new = forget_gate * c + input_gate * candidate
        gain = weights.extra["layernorm_cell_weight"]
        shift = weights.extra.get("layernorm_cell_bias")
        h_new = output_gate * torch.tanh(F.layer_norm(c_new, gain.shape, gain, shift, LAYER_NORM_EPS))
        return h_new, c_new, (input_gate, forget_gate, candidate, output_gate)
