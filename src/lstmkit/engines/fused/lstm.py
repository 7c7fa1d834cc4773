"""The fused steps of the LSTM family: the LSTM with its ablations, peephole, CIFG."""

from __future__ import annotations

from functools import cache, cached_property

import torch
from torch import Tensor
from torch.ops import aten

from lstmkit.cells import LayerWeights
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep, four_blocks, gate_blocks, over_rows


class LSTMKernel(FusedKernel):
    """`LSTMStep.step` in place; a removed gate is skipped, not multiplied by 1."""

    def tape(self, hidden_size: int) -> dict[str, int]:
        return {"tanh_c": hidden_size} if self.cell.output_activation else {}

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        """The cell's gate blocks (i, f, g, o, those it has), and the sigmoid runs: its
        sigmoid blocks with adjacent ones merged (i, f | o), so each run is one call."""
        runs = sigmoid_runs(self.cell.weight_blocks, hidden_size)
        named_runs = dict(zip(self.sigmoid_run_names, runs, strict=True))
        return {**gate_blocks(self.cell.weight_blocks, hidden_size), **named_runs}

    @cached_property
    def sigmoid_run_names(self) -> tuple[str, ...]:
        """The names of the sigmoid runs among `blocks`."""
        return tuple(f"sigmoid {index}" for index in range(len(sigmoid_runs(self.cell.weight_blocks, 1))))

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        blocks = step.blocks
        i, f, g, o = (blocks.get(block) for block in "ifgo")
        for run in self.sigmoid_run_names:
            blocks[run].sigmoid_()                                         # i, f, o = σ(·)
        if self.cell.input_activation:
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
        if self.cell.output_activation:                                    # h' = o ⊙ tanh(c')
            cell_out = torch.tanh(step.c_new, out=step.tape["tanh_c"])
        if o is None:
            step.h_new.copy_(cell_out)
        else:
            torch.mul(o, cell_out, out=step.h_new)

    def backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        i, f, g, o = (step.blocks.get(block) for block in "ifgo")
        d_i, d_f, d_g, d_o = (grads.blocks.get(block) for block in "ifgo")
        cell_out = step.tape["tanh_c"] if self.cell.output_activation else step.c_new
        d_cell_out = dh                                                    # h' = o ⊙ tanh(c')
        if o is not None:
            torch.mul(dh, cell_out, out=d_o)                               #   do = dh ⊙ tanh(c')
            d_cell_out = dh * o
        if self.cell.output_activation:
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
        for run in self.sigmoid_run_names:                                 # i, f, o = σ(·)
            d_run = grads.blocks[run]
            aten.sigmoid_backward.grad_input(d_run, step.blocks[run], grad_input=d_run)
        if self.cell.input_activation:                                     # g = tanh(·)
            aten.tanh_backward.grad_input(d_g, g, grad_input=d_g)
        if f is not None:
            dc.mul_(f)                                                     # dc_prev = dc ⊙ f


class PeepholeKernel(FusedKernel):
    """`PeepholeLSTMStep.step` in place."""

    def tape(self, hidden_size: int) -> dict[str, int]:
        return {"tanh_c": hidden_size}

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        return four_blocks(hidden_size)

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        p_i, p_f, p_o = (weights.extra[name] for name in ("peephole_i", "peephole_f", "peephole_o"))
        i, f, g, o = (step.blocks[block] for block in "ifgo")
        i.addcmul_(p_i, step.c)                                            # i = σ(· + p_i ⊙ c)
        f.addcmul_(p_f, step.c)                                            # f = σ(· + p_f ⊙ c)
        step.blocks["if"].sigmoid_()
        g.tanh_()                                                          # g = tanh(·)
        torch.mul(f, step.c, out=step.c_new)                               # c' = f ⊙ c + i ⊙ g
        step.c_new.addcmul_(i, g)
        o.addcmul_(p_o, step.c_new).sigmoid_()                             # o = σ(· + p_o ⊙ c')
        tanh_c = torch.tanh(step.c_new, out=step.tape["tanh_c"])           # h' = o ⊙ tanh(c')
        torch.mul(o, tanh_c, out=step.h_new)

    def backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        p_i, p_f, p_o = (weights.extra[name] for name in ("peephole_i", "peephole_f", "peephole_o"))
        i, f, g, o = (step.blocks[block] for block in "ifgo")
        d_i, d_f, d_g, d_o = (grads.blocks[block] for block in "ifgo")
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
        d_input_forget = grads.blocks["if"]
        aten.sigmoid_backward.grad_input(d_input_forget, step.blocks["if"], grad_input=d_input_forget)
        dc.addcmul_(d_f, p_f)                                              # f = σ(· + p_f ⊙ c)
        dc.addcmul_(d_i, p_i)                                              # i = σ(· + p_i ⊙ c)

    def parameter_grads(
        self,
        grads: FusedGrads,
        rec: Tensor | None,
        cells: Tensor,
        new_cells: Tensor,
        tape: dict[str, Tensor],
        weights: LayerWeights,
    ) -> dict[str, Tensor]:
        """dp_i = Σ d(i pre) ⊙ c, dp_f = Σ d(f pre) ⊙ c, dp_o = Σ d(o pre) ⊙ c', over steps and batch.

        One step's (a cell module's, where every launch costs host time at every step): one
        product and one sum for the three. A layer's steps: three of each, with no (T, B, 4, H)
        temporary, and three tensors of their own (a custom op's outputs may not alias)."""
        bias_grads = super().parameter_grads(grads, rec, cells, new_cells, tape, weights)
        if grads.d_gates.dim() == 2:
            states = torch.stack((cells, cells, cells, new_cells), 1)      # (B, 4, H); the g slot is not read
            per_gate = (grads.d_gates.unflatten(-1, (4, -1)) * states).sum(0)
            return {**bias_grads, "peephole_i": per_gate[0], "peephole_f": per_gate[1], "peephole_o": per_gate[3]}
        d_i, d_f, _, d_o = grads.d_gates.chunk(4, -1)
        return {
            **bias_grads,
            "peephole_i": over_rows(d_i * cells),
            "peephole_f": over_rows(d_f * cells),
            "peephole_o": over_rows(d_o * new_cells),
        }


class CIFGKernel(FusedKernel):
    """`CIFGLSTMStep.step` in place."""

    def tape(self, hidden_size: int) -> dict[str, int]:
        return {"tanh_c": hidden_size}

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        return gate_blocks("igo", hidden_size)

    def forward(self, step: FusedStep, weights: LayerWeights) -> None:
        i, g, o = (step.blocks[block] for block in "igo")
        i.sigmoid_()                                                       # i = σ(·)
        g.tanh_()                                                          # g = tanh(·)
        o.sigmoid_()                                                       # o = σ(·)
        torch.mul(i, g, out=step.c_new)                                    # c' = (1 − i) ⊙ c + i ⊙ g, as written:
        step.c_new.addcmul_(torch.rsub(i, 1), step.c)                      #   c + i ⊙ (g − c) is NaN at c = ±inf
        tanh_c = torch.tanh(step.c_new, out=step.tape["tanh_c"])           # h' = o ⊙ tanh(c')
        torch.mul(o, tanh_c, out=step.h_new)

    def backward(
        self, dh: Tensor, dc: Tensor, step: FusedStep, grads: FusedGrads, weights: LayerWeights
    ) -> None:
        """The forward lines in reverse, each differentiated."""
        i, g, o = (step.blocks[block] for block in "igo")
        d_i, d_g, d_o = (grads.blocks[block] for block in "igo")
        tanh_c = step.tape["tanh_c"]
        torch.mul(dh, tanh_c, out=d_o)                                     # h' = o ⊙ tanh(c')
        dc.add_(aten.tanh_backward(dh * o, tanh_c))
        torch.mul(dc, g - step.c, out=d_i)                                 # c' = (1 − i) ⊙ c + i ⊙ g
        torch.mul(dc, i, out=d_g)
        dc.sub_(d_g)                                                       #   dc_prev = dc ⊙ (1 − i)
        aten.sigmoid_backward.grad_input(d_o, o, grad_input=d_o)           # o = σ(·)
        aten.tanh_backward.grad_input(d_g, g, grad_input=d_g)              # g = tanh(·)
        aten.sigmoid_backward.grad_input(d_i, i, grad_input=d_i)           # i = σ(·)


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
