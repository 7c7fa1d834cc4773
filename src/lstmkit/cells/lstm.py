"""The LSTM and its classic variants: ablations, peephole connections, coupled gates."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit.cells.base import Cell, ExtraParameter, LayerWeights, check_bool_options


# The LSTM's blocks kept by its gate switches (input_gate, forget_gate, output_gate), in order.
KEPT_BLOCKS = {
    (input_gate, forget_gate, output_gate): tuple(
        block for block, kept in zip("ifgo", (input_gate, forget_gate, True, output_gate)) if kept)
    for input_gate in (False, True) for forget_gate in (False, True) for output_gate in (False, True)
}
GATE_NAMES = {"i": "input", "f": "forget", "g": "candidate", "o": "output"}


@dataclass(frozen=True)
class LSTMStep(Cell):
    """LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000), exactly torch.nn.LSTM.

    Options (all True by default; False gives the ablations of Greff et al. 2017): `input_gate`
    (i), `forget_gate` (f), `output_gate` (o), `input_activation` (tanh of g),
    `output_activation` (tanh of c'). A removed gate has no weight rows: G = 4 minus the number
    of removed gates, and the remaining blocks keep the order i, f, g, o.
    """

    name = "lstm"
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    input_activation: bool = True
    output_activation: bool = True

    def __post_init__(self) -> None:
        check_bool_options(self)

    @property
    def weight_blocks(self) -> tuple[str, ...]:
        """The blocks the gate switches keep. A plain property read from a table: a
        cached_property's first read under torch.compile takes a lock (Python 3.11) Dynamo
        cannot trace, and a value set on the instance would be missing from models pickled
        before it was."""
        return KEPT_BLOCKS[self.input_gate, self.forget_gate, self.output_gate]

    @property
    def trace_names(self) -> tuple[str, ...]:
        return tuple(GATE_NAMES[block] for block in self.weight_blocks)

    @property
    def forget_bias_block(self) -> tuple[str, float] | None:
        return ("f", 1.0) if self.forget_gate else None

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """One LSTM step; `(·)` is `W_i* x + b_i* + W_h* h + b_h*` for that gate.

            i  = σ(·)        (i ≡ 1 without input_gate)
            f  = σ(·)        (f ≡ 1 without forget_gate)
            g  = tanh(·)     (g = (·) without input_activation)
            o  = σ(·)        (o ≡ 1 without output_gate)
            c' = f ⊙ c + i ⊙ g
            h' = o ⊙ tanh(c')   (h' = o ⊙ c' without output_activation)
        """
        pre = dict(zip(self.weight_blocks, (x_proj + h_proj).chunk(self.num_gates, -1), strict=True))
        input_gate = torch.sigmoid(pre["i"]) if self.input_gate else None
        forget_gate = torch.sigmoid(pre["f"]) if self.forget_gate else None
        candidate = torch.tanh(pre["g"]) if self.input_activation else pre["g"]
        output_gate = torch.sigmoid(pre["o"]) if self.output_gate else None
        kept = c if forget_gate is None else forget_gate * c
        written = candidate if input_gate is None else input_gate * candidate
        c_new = kept + written
        cell_out = torch.tanh(c_new) if self.output_activation else c_new
        h_new = cell_out if output_gate is None else output_gate * cell_out
        activations = tuple(
            gate for gate in (input_gate, forget_gate, candidate, output_gate) if gate is not None
        )
        return h_new, c_new, activations

@dataclass(frozen=True)
class PeepholeLSTMStep(Cell):
    """LSTM with peephole connections from the cell state to the gates (Gers & Schmidhuber 2000).

    Adds per layer and direction the vectors `peephole_i`, `peephole_f`, `peephole_o` (size H).
    """

    name = "peephole"
    weight_blocks = ("i", "f", "g", "o")
    trace_names = ("input", "forget", "candidate", "output")
    extra_parameters = (
        ExtraParameter("peephole_i", "hidden", "uniform"),
        ExtraParameter("peephole_f", "hidden", "uniform"),
        ExtraParameter("peephole_o", "hidden", "uniform"),
    )

    @property
    def forget_bias_block(self) -> tuple[str, float]:
        return ("f", 1.0)

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """One peephole LSTM step; `(·)` is `W_i* x + b_i* + W_h* h + b_h*` for that gate.

            i  = σ(· + p_i ⊙ c)
            f  = σ(· + p_f ⊙ c)
            g  = tanh(·)
            c' = f ⊙ c + i ⊙ g
            o  = σ(· + p_o ⊙ c')
            h' = o ⊙ tanh(c')
        """
        pre_i, pre_f, pre_g, pre_o = (x_proj + h_proj).chunk(4, -1)
        input_gate = torch.sigmoid(pre_i + weights.extra["peephole_i"] * c)
        forget_gate = torch.sigmoid(pre_f + weights.extra["peephole_f"] * c)
        candidate = torch.tanh(pre_g)
        c_new = forget_gate * c + input_gate * candidate
        output_gate = torch.sigmoid(pre_o + weights.extra["peephole_o"] * c_new)
        h_new = output_gate * torch.tanh(c_new)
        return h_new, c_new, (input_gate, forget_gate, candidate, output_gate)

@dataclass(frozen=True)
class CIFGLSTMStep(Cell):
    """Coupled input-forget gate LSTM (Greff et al. 2017): the forget gate is 1 - i (G = 3).

    `forget_bias=b` initialises the input-gate bias to -b, so that f = σ(b) at zero input.
    """

    name = "cifg"
    weight_blocks = ("i", "g", "o")
    trace_names = ("input", "candidate", "output")

    @property
    def forget_bias_block(self) -> tuple[str, float]:
        return ("i", -1.0)

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """One CIFG step; `(·)` is `W_i* x + b_i* + W_h* h + b_h*` for that gate.

            i  = σ(·)
            f  = 1 − i
            g  = tanh(·)
            o  = σ(·)
            c' = f ⊙ c + i ⊙ g
            h' = o ⊙ tanh(c')
        """
        pre_i, pre_g, pre_o = (x_proj + h_proj).chunk(3, -1)
        input_gate = torch.sigmoid(pre_i)
        forget_gate = 1 - input_gate
        candidate = torch.tanh(pre_g)
        output_gate = torch.sigmoid(pre_o)
        c_new = forget_gate * c + input_gate * candidate
        h_new = output_gate * torch.tanh(c_new)
        return h_new, c_new, (input_gate, candidate, output_gate)

    def named_gates(self, activations: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """Input, forget (= 1 - input), candidate and output activations."""
        input_gate, candidate, output_gate = activations
        return {
            "input": input_gate,
            "forget": 1 - input_gate,
            "candidate": candidate,
            "output": output_gate,
        }
