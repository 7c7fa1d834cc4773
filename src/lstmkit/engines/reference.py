"""The reference engine: a plain loop over time under autograd. Short, obviously right: the oracle."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.cells import Cell, LayerWeights, is_builtin
from lstmkit.cells.base import check_step_results
from lstmkit.engines.base import LayerEngine, LayerNoise, LayerRun
from lstmkit.engines.native import NativeEngine
from lstmkit.engines.precision import Precision, autocast, cast_weights


class ReferenceEngine(LayerEngine):
    """Calls the cell's `step` once per time step; autograd does the backward."""

    name = "reference"

    def run_layer(
        self,
        cell: Cell,
        weights: LayerWeights,
        inputs: Tensor,
        h0: Tensor,
        c0: Tensor | None,
        lengths: Tensor | None,
        return_gates: bool,
        precision: Precision,
        noise: LayerNoise | None = None,
    ) -> LayerRun:
        """Run `cell` over `inputs` (T, B, I) from the state (h0, c0), one step at a time.

        `lengths` (B,): each sequence's valid steps; past them the state is held and the output
        (and traced activations) are zero. None means every step is valid. With mixed
        precision the products run under autocast in `precision.compute` and everything else in
        `precision.state`.
        """
        weights = cast_weights(weights, precision.state, precision.state)
        with autocast(inputs.device.type, precision.compute, precision.mixed):
            run = loop(cell, weights, inputs.to(precision.state), h0.to(precision.state),
                       None if c0 is None else c0.to(precision.state), lengths, return_gates, noise)
        output, h, c, gates, cells = run
        return LayerRun(output.to(precision.output), h.to(precision.output),
                        None if c is None else c.to(precision.final_cell), gates, cells)


def loop(
    cell: Cell,
    weights: LayerWeights,
    inputs: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    lengths: Tensor | None,
    return_gates: bool,
    noise: LayerNoise | None = None,
) -> LayerRun:
    """The loop over time itself, every tensor in the state dtype; with `noise`, h_{t-1} is
    masked in the recurrent product and the new state zoned out (LayerNoise)."""
    state_dtype = h0.dtype
    noise = LayerNoise() if noise is None else LayerNoise(*(
        None if part is None else part.to(state_dtype) for part in noise))
    mask = None
    if lengths is not None:
        mask = torch.arange(inputs.shape[0], device=inputs.device).unsqueeze(1) < lengths
    h, c = h0, c0
    outputs, traced_gates, cell_states = [], [], []
    for t, x_t in enumerate(inputs.unbind(0)):  # traced, a list of T: another length is refused, not cut
        x_proj = cell.project_input(x_t, weights).to(state_dtype)
        h_seen = h if noise.recurrent_mask is None else h * noise.recurrent_mask
        h_proj = cell.project_hidden(h_seen, weights).to(state_dtype)
        result = cell.step(x_proj, h_proj, h, c, weights)
        if t == 0 and not is_builtin(cell):
            check_step_results(cell, result, return_gates, (x_t.shape[0], weights.weight_hh.shape[0] // cell.num_gates))
        h_new, c_new, gates = result
        if weights.weight_hr is not None:
            h_new = F.linear(h_new, weights.weight_hr).to(state_dtype)
        if noise.keep_hidden is not None:
            h_new = zone_out(h_new, h, noise.keep_hidden, t)
        if noise.keep_cell is not None:
            c_new = zone_out(c_new, c, noise.keep_cell, t)
        if mask is None:
            h, c, output = h_new, c_new, h_new
        else:
            valid = mask[t].unsqueeze(-1)
            h = torch.where(valid, h_new, h)
            c = None if c is None else torch.where(valid, c_new, c)
            output = h_new.masked_fill(~valid, 0)
            gates = tuple(gate.masked_fill(~valid, 0) for gate in gates)
            c_new = None if c_new is None else c_new.masked_fill(~valid, 0)
        outputs.append(output)
        if return_gates:
            traced_gates.append(gates)
            cell_states.append(c_new)
    stacked_gates = stacked_cells = None
    if return_gates:
        stacked_gates = tuple(torch.stack(per_step) for per_step in zip(*traced_gates, strict=True))
        if c is not None:
            stacked_cells = torch.stack(cell_states)
    return LayerRun(torch.stack(outputs), h, c, stacked_gates, stacked_cells)


def warn_unrolled(cell: Cell, steps: int) -> None:
    """Say that torch.jit.trace records this loop unrolled, so its trace takes `steps` steps only
    (a layer's call; a cell module's step has no length to fix)."""
    native = "" if NativeEngine().unsupported(cell, None) else (
        "; torch's own kernel (engine='native', without return_gates=True or the regularisers it does not run) "
        "records one op that takes any length")
    warnings.warn(f"torch.jit.trace records lstmkit's {cell.name} loop over time unrolled, for the {steps} steps of "
                  f"the example input: the trace refuses input of any other length{native}",
                  torch.jit.TracerWarning, stacklevel=2)


def zone_out(new: Tensor, previous: Tensor, keep: Tensor, t: int) -> Tensor:
    """new + keep ⊙ (previous − new): the previous value where a unit is kept (keep: a 0/1
    mask per step (T, B, ·) in training, the scalar z in evaluation)."""
    return new + (keep[t] if keep.dim() else keep) * (previous - new)
