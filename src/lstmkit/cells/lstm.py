"""The LSTM and its classic variants: ablations, peephole connections, coupled gates."""

from __future__ import annotations

from dataclasses import dataclass

from functools import cache, cached_property

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells.base import Cell, ExtraParameter, FusedGrads, FusedStep, LayerWeights, check_bool_options


@dataclass(frozen=True)
class LSTMCell(Cell):
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

    @cached_property
    def weight_blocks(self) -> tuple[str, ...]:
        present = {"i": self.input_gate, "f": self.forget_gate, "g": True, "o": self.output_gate}
        return tuple(block for block, kept in present.items() if kept)

    @cached_property
    def trace_names(self) -> tuple[str, ...]:
        names = {"i": "input", "f": "forget", "g": "candidate", "o": "output"}
        return tuple(names[block] for block in self.weight_blocks)

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

    def fused_tape(self, hidden_size: int) -> dict[str, int]:
        return {"tanh_c": hidden_size} if self.output_activation else {}

    def fused_forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """`step`'s equations in place; a removed gate is skipped, not multiplied by 1."""
        i, f, g, o = self.gate_views(step.gates)
        for run in self.sigmoid_runs(step.c.shape[-1]):
            step.gates[:, run].sigmoid_()                                  # i, f, o = σ(·)
        if self.input_activation:
            g.tanh_()                                                      # g = tanh(·)
        if f is None:                                                      # c' = f ⊙ c + i ⊙ g
            step.c_new.copy_(step.c)
        else:
            torch.mul(f, step.c, out=step.c_new)
        if i is None:
            step.c_new.add_(g)
        else:
            step.c_new.addcmul_(i, g)
        cell_out = step.c_new
        if self.output_activation:                                         # h' = o ⊙ tanh(c')
            cell_out = torch.tanh(step.c_new, out=step.tape["tanh_c"])
        if o is None:
            step.h_new.copy_(cell_out)
        else:
            torch.mul(o, cell_out, out=step.h_new)

    def fused_backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        i, f, g, o = self.gate_views(step.gates)
        d_i, d_f, d_g, d_o = self.gate_views(grads.d_gates)
        cell_out = step.tape["tanh_c"] if self.output_activation else step.c_new
        d_cell_out = dh                                                    # h' = o ⊙ tanh(c')
        if o is not None:
            torch.mul(dh, cell_out, out=d_o)                               #   do = dh ⊙ tanh(c')
            d_cell_out = dh * o
        if self.output_activation:
            dc.add_(aten.tanh_backward(d_cell_out, cell_out))              #   dc += dh ⊙ o ⊙ tanh'(c')
        else:
            dc.add_(d_cell_out)
        if i is not None:                                                  # c' = f ⊙ c + i ⊙ g
            torch.mul(dc, g, out=d_i)                                      #   di = dc ⊙ g
            torch.mul(dc, i, out=d_g)                                      #   dg = dc ⊙ i
        else:
            d_g.copy_(dc)
        if f is not None:
            torch.mul(dc, step.c, out=d_f)                                 #   df = dc ⊙ c
        for run in self.sigmoid_runs(step.c.shape[-1]):                    # i, f, o = σ(·)
            aten.sigmoid_backward.grad_input(grads.d_gates[:, run], step.gates[:, run], grad_input=grads.d_gates[:, run])
        if self.input_activation:                                          # g = tanh(·)
            aten.tanh_backward.grad_input(d_g, g, grad_input=d_g)
        if f is not None:
            dc.mul_(f)                                                     # dc_prev = dc ⊙ f

    def gate_views(self, stacked: Tensor) -> tuple[Tensor | None, ...]:
        """The i, f, g, o blocks of a (b, G*H) tensor as views; None for a removed gate."""
        blocks = stacked.chunk(self.num_gates, -1)
        return tuple(None if position is None else blocks[position] for position in self.block_positions)

    @cached_property
    def block_positions(self) -> tuple[int | None, ...]:
        """Where i, f, g, o sit among the weight blocks (None where removed)."""
        return tuple(self.weight_blocks.index(block) if block in self.weight_blocks else None for block in "ifgo")

    def sigmoid_runs(self, hidden_size: int) -> tuple[slice, ...]:
        """The column ranges of the sigmoid gates, adjacent blocks merged (i, f | o)."""
        return sigmoid_runs(self.weight_blocks, hidden_size)


@dataclass(frozen=True)
class PeepholeLSTMCell(Cell):
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

    def fused_tape(self, hidden_size: int) -> dict[str, int]:
        return {"tanh_c": hidden_size}

    def fused_forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """`step`'s equations in place."""
        p_i, p_f, p_o = (weights.extra[name] for name in ("peephole_i", "peephole_f", "peephole_o"))
        i, f, g, o = step.gates.chunk(4, -1)
        i.addcmul_(p_i, step.c)                                            # i = σ(· + p_i ⊙ c)
        f.addcmul_(p_f, step.c)                                            # f = σ(· + p_f ⊙ c)
        step.gates[:, : 2 * i.shape[-1]].sigmoid_()
        g.tanh_()                                                          # g = tanh(·)
        torch.mul(f, step.c, out=step.c_new)                               # c' = f ⊙ c + i ⊙ g
        step.c_new.addcmul_(i, g)
        o.addcmul_(p_o, step.c_new).sigmoid_()                             # o = σ(· + p_o ⊙ c')
        tanh_c = torch.tanh(step.c_new, out=step.tape["tanh_c"])           # h' = o ⊙ tanh(c')
        torch.mul(o, tanh_c, out=step.h_new)

    def fused_backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        p_i, p_f, p_o = (weights.extra[name] for name in ("peephole_i", "peephole_f", "peephole_o"))
        i, f, g, o = step.gates.chunk(4, -1)
        d_i, d_f, d_g, d_o = grads.d_gates.chunk(4, -1)
        tanh_c = step.tape["tanh_c"]
        torch.mul(dh, tanh_c, out=d_o)                                     # h' = o ⊙ tanh(c')
        dc.add_(aten.tanh_backward(dh * o, tanh_c))
        aten.sigmoid_backward.grad_input(d_o, o, grad_input=d_o)           # o = σ(· + p_o ⊙ c')
        dc.addcmul_(d_o, p_o)
        torch.mul(dc, g, out=d_i)                                          # c' = f ⊙ c + i ⊙ g
        torch.mul(dc, i, out=d_g)
        torch.mul(dc, step.c, out=d_f)
        dc.mul_(f)
        aten.tanh_backward.grad_input(d_g, g, grad_input=d_g)              # g = tanh(·)
        hidden = i.shape[-1]
        aten.sigmoid_backward.grad_input(
            grads.d_gates[:, : 2 * hidden], step.gates[:, : 2 * hidden], grad_input=grads.d_gates[:, : 2 * hidden]
        )
        dc.addcmul_(d_f, p_f)                                              # f = σ(· + p_f ⊙ c)
        dc.addcmul_(d_i, p_i)                                              # i = σ(· + p_i ⊙ c)

    def fused_parameter_grads(
        self,
        grads: FusedGrads,
        rec: Tensor | None,
        states: Tensor,
        tape: dict[str, Tensor],
        weights: LayerWeights,
    ) -> dict[str, Tensor]:
        """dp_i = Σ d(i pre) ⊙ c, dp_f = Σ d(f pre) ⊙ c, dp_o = Σ d(o pre) ⊙ c', over steps and batch."""
        d_i, d_f, _, d_o = grads.d_gates.chunk(4, -1)
        return {
            **super().fused_parameter_grads(grads, rec, states, tape, weights),
            "peephole_i": (d_i * states[:-1]).sum((0, 1)),
            "peephole_f": (d_f * states[:-1]).sum((0, 1)),
            "peephole_o": (d_o * states[1:]).sum((0, 1)),
        }


@dataclass(frozen=True)
class CIFGLSTMCell(Cell):
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

    def fused_tape(self, hidden_size: int) -> dict[str, int]:
        return {"tanh_c": hidden_size}

    def fused_forward(self, step: FusedStep, weights: LayerWeights) -> None:
        """`step`'s equations in place, with c' = (1 − i) ⊙ c + i ⊙ g = c + i ⊙ (g − c)."""
        i, g, o = step.gates.chunk(3, -1)
        i.sigmoid_()                                                       # i = σ(·)
        g.tanh_()                                                          # g = tanh(·)
        o.sigmoid_()                                                       # o = σ(·)
        torch.addcmul(step.c, i, g - step.c, out=step.c_new)               # c' = c + i ⊙ (g − c)
        tanh_c = torch.tanh(step.c_new, out=step.tape["tanh_c"])           # h' = o ⊙ tanh(c')
        torch.mul(o, tanh_c, out=step.h_new)

    def fused_backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        i, g, o = step.gates.chunk(3, -1)
        d_i, d_g, d_o = grads.d_gates.chunk(3, -1)
        tanh_c = step.tape["tanh_c"]
        torch.mul(dh, tanh_c, out=d_o)                                     # h' = o ⊙ tanh(c')
        dc.add_(aten.tanh_backward(dh * o, tanh_c))
        torch.mul(dc, g - step.c, out=d_i)                                 # c' = c + i ⊙ (g − c)
        torch.mul(dc, i, out=d_g)
        dc.sub_(d_g)                                                       #   dc_prev = dc ⊙ (1 − i)
        aten.sigmoid_backward.grad_input(d_o, o, grad_input=d_o)           # o = σ(·)
        aten.tanh_backward.grad_input(d_g, g, grad_input=d_g)              # g = tanh(·)
        aten.sigmoid_backward.grad_input(d_i, i, grad_input=d_i)           # i = σ(·)

    def named_gates(self, activations: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """Input, forget (= 1 - input), candidate and output activations."""
        input_gate, candidate, output_gate = activations
        return {
            "input": input_gate,
            "forget": 1 - input_gate,
            "candidate": candidate,
            "output": output_gate,
        }


@cache
def sigmoid_runs(blocks: tuple[str, ...], hidden_size: int) -> tuple[slice, ...]:
    """Column ranges of the sigmoid blocks (all but g) of `blocks`, adjacent ones merged."""
    runs: list[slice] = []
    for index, block in enumerate(blocks):
        if block == "g":
            continue
        start, stop = index * hidden_size, (index + 1) * hidden_size
        if runs and runs[-1].stop == start:
            runs[-1] = slice(runs[-1].start, stop)
        else:
            runs.append(slice(start, stop))
    return tuple(runs)
