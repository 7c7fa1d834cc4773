"""The fused engine: one autograd.Function per layer and direction, backward derived by hand.

Forward: the input projections of all T steps as one matrix product; then per step one
recurrent matrix product and the cell's point-wise step, written in place into buffers
allocated once. Sequences of a padded batch are sorted by length, longest first, so that step
t works on the first `batch_sizes[t]` rows only (as packed sequences do): no masking.

What forward keeps for backward: the input x; the gate activations of every step (written
over the input projections); h_0..h_T and c_0..c_T; the recurrent projections for cells that
take them apart ("biased", "raw"); the unprojected outputs with proj_size; and the per-step
buffers the cell asks for (e.g. tanh(c_t)).

Backward: per step (last to first) the cell's point-wise backward and one matrix product for
d h_{t-1} (two with proj_size); then the gradients of the input, weights, biases and the
cell's extra parameters as single large operations over all steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.cells import Cell, LayerWeights
from lstmkit.engines.base import LayerEngine, LayerNoise, LayerRun, run_eagerly
from lstmkit.engines.fused.gru import GRUKernel
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep
from lstmkit.engines.fused.layernorm import LayerNormKernel
from lstmkit.engines.fused.lstm import CIFGKernel, LSTMKernel, PeepholeKernel
from lstmkit.engines.fused.products import Products
from lstmkit.engines.fused.rnn import RNNKernel
from lstmkit.engines.precision import Precision, cast_weights
from lstmkit.engines.reference import ReferenceEngine

KERNELS: dict[str, type[FusedKernel]] = {
    "rnn": RNNKernel, "lstm": LSTMKernel, "gru": GRUKernel, "peephole": PeepholeKernel, "cifg": CIFGKernel,
    "layernorm": LayerNormKernel,
}


class FusedEngine(LayerEngine):
    """Per layer and direction, one FusedLayer with the cell's FusedKernel."""

    name = "fused"
    # Recurrent dropout and zoneout act inside the step: not in these kernels yet.
    regularisers = frozenset({"input_dropout", "weight_dropout"})

    def kernels(self) -> dict[str, type[FusedKernel]]:
        """The point-wise kernel of each cell, by cell name."""
        return KERNELS

    def unsupported(self, cell: Cell, device: torch.device | None) -> str | None:
        if cell.name not in KERNELS:
            return f"cell {cell.name!r} has no {self.name} kernel ({self.name} runs {', '.join(KERNELS)})"
        return None

    @run_eagerly
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
        """Run `cell` over `inputs` (T, B, I); the contract of `LayerEngine.run_layer`
        (without noise: `regularisers`).

        torch.compile runs it eagerly (a graph break), as it runs torch.nn's RNNs: the
        compiler cannot see the buffers the kernels write in place."""
        with torch.autocast(inputs.device.type, enabled=False):
            run = run_fused(
                self.kernels()[cell.name](cell), cast_weights(weights, precision.compute, precision.state),
                inputs.to(precision.compute), h0.to(precision.state),
                None if c0 is None else c0.to(precision.state), lengths, return_gates, precision,
            )
        cast = precision.output
        return run._replace(
            output=run.output.to(cast), h=run.h.to(cast), c=None if run.c is None else run.c.to(cast)
        )


def run_fused(
    kernel: FusedKernel,
    weights: LayerWeights,
    inputs: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    lengths: Tensor | None,
    return_gates: bool,
    precision: Precision,
) -> LayerRun:
    """The layer with inputs and product weights in the compute dtype, the state, biases and
    extra parameters in the state dtype; outputs in the state dtype."""
    cell = kernel.cell
    steps, batch_size = inputs.shape[:2]
    order = batch_sizes = None
    if lengths is not None and bool((lengths < steps).any()):
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        counts = sorted_lengths.cpu().tolist()
        batch_sizes = [sum(1 for length in counts if length > t) for t in range(steps)]
        inputs, h0 = inputs.index_select(1, order), h0.index_select(0, order)
        c0 = None if c0 is None else c0.index_select(0, order)
    output, h_n, c_n, gates, cell_states = FusedLayer.apply(
        kernel, batch_sizes, return_gates, precision, inputs, h0, c0, *flatten(cell, weights)
    )
    if order is not None:
        restore = torch.argsort(order)
        output, h_n = output.index_select(1, restore), h_n.index_select(0, restore)
        c_n = None if c_n is None else c_n.index_select(0, restore)
        if return_gates:
            gates = gates.index_select(1, restore)
            cell_states = None if cell_states is None else cell_states.index_select(1, restore)
    traced = None
    if return_gates:
        if lengths is not None:
            valid = (torch.arange(steps, device=inputs.device).unsqueeze(1) < lengths).unsqueeze(-1)
            gates = gates.masked_fill(~valid, 0)
        traced = tuple(gates.chunk(cell.num_gates, -1)) if cell.trace_names else ()
    return LayerRun(output, h_n, c_n, traced, cell_states)


def flatten(cell: Cell, weights: LayerWeights) -> list[Tensor | None]:
    """The weights as autograd.Function arguments: the five torch.nn ones, then the extras."""
    extras = [weights.extra.get(parameter.name) for parameter in cell.extra_parameters]
    return [weights.weight_ih, weights.weight_hh, weights.bias_ih, weights.bias_hh, weights.weight_hr, *extras]


def unflatten(cell: Cell, parameters: tuple[Tensor | None, ...]) -> LayerWeights:
    """Inverse of `flatten`."""
    weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, *extras = parameters
    extra = {
        parameter.name: value
        for parameter, value in zip(cell.extra_parameters, extras, strict=True)
        if value is not None
    }
    return LayerWeights(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, extra)


class FusedLayer(torch.autograd.Function):
    """One layer and direction of a recurrent stack, forward and hand-derived backward."""

    @staticmethod
    def forward(ctx, kernel, batch_sizes, return_gates, precision, x, h0, c0, *parameters):
        cell = kernel.cell
        weights = unflatten(cell, parameters)
        products = Products(precision.compute, precision.state)
        steps, batch_size, _ = x.shape
        hidden_size = weights.weight_hh.shape[0] // cell.num_gates
        gate_size = cell.num_gates * hidden_size
        new = dict(dtype=precision.state, device=x.device)

        pre, input_saved = kernel.project_input(x.flatten(0, 1), weights, products)
        gates = pre.view(steps, batch_size, gate_size)
        # With every sequence running every step, each buffer row is written before it is
        # read; with lengths, the rows past a sequence's end must read as zero.
        allocate = torch.empty if batch_sizes is None else torch.zeros
        hs = allocate(steps + 1, batch_size, h0.shape[-1], **new)
        cs = allocate(steps + 1, batch_size, hidden_size, **new) if c0 is not None else None
        hs[0] = h0
        if cs is not None:
            cs[0] = c0
        cell_outputs = allocate(steps, batch_size, hidden_size, **new) if weights.weight_hr is not None else None
        rec = None if kernel.recurrence == "gates" else allocate(steps, batch_size, gate_size, **new)
        tape = {name: allocate(steps, batch_size, size, **new) for name, size in kernel.tape(hidden_size).items()}

        weight_hh_t = weights.weight_hh.t()
        for step in step_views(batch_sizes, gates, rec, hs, cs, cell_outputs, tape):
            if kernel.recurrence == "gates":
                products.accumulate(step.gates, step.h, weight_hh_t)
            else:
                bias = weights.bias_hh if kernel.recurrence == "biased" else None
                products.into(step.rec, step.h, weight_hh_t, bias)
            kernel.forward(step, weights)
            if weights.weight_hr is not None:
                products.into(step.h_projected, step.h_new, weights.weight_hr.t())

        if batch_sizes is None:
            h_n, c_n = hs[steps].clone(), None if cs is None else cs[steps].clone()
        else:
            last = torch.tensor(batch_sizes, device=x.device)
            ends = (torch.arange(batch_size, device=x.device).unsqueeze(0) < last.unsqueeze(1)).sum(0)
            columns = torch.arange(batch_size, device=x.device)
            h_n, c_n = hs[ends, columns], None if cs is None else cs[ends, columns]

        ctx.kernel, ctx.batch_sizes, ctx.products, ctx.tape_names = kernel, batch_sizes, products, list(tape)
        ctx.allocate, ctx.precision = allocate, precision
        ctx.input_saved_count = len(input_saved)
        ctx.save_for_backward(
            x, gates, hs, cs, cell_outputs, rec, *parameters, *input_saved, *tape.values(), h0, c0
        )
        traced_gates = traced_cells = None
        if return_gates:
            traced_gates = gates.clone()
            traced_cells = None if cs is None else cs[1:].clone()
            ctx.mark_non_differentiable(*(t for t in (traced_gates, traced_cells) if t is not None))
        return hs[1:], h_n, c_n, traced_gates, traced_cells

    @staticmethod
    def backward(ctx, d_output, d_h_n, d_c_n, _d_gates, _d_cells):
        if torch.is_grad_enabled():  # backward(create_graph=True): its graph is wanted too
            return differentiable_backward(ctx, d_output, d_h_n, d_c_n)
        with torch.autocast(d_output.device.type, enabled=False):
            return backward_loop(ctx, d_output, d_h_n, d_c_n)


def differentiable_backward(ctx, d_output: Tensor, d_h_n: Tensor, d_c_n: Tensor | None) -> tuple:
    """FusedLayer's backward as a graph, for double backward (gradient penalties, Hessians):
    the layer recomputed by the reference engine's loop under autograd, and differentiated with
    create_graph=True. The same math, so the same gradients; paid only when asked for."""
    kernel, batch_sizes, precision = ctx.kernel, ctx.batch_sizes, ctx.precision
    x, *saved = ctx.saved_tensors
    h0, c0 = saved[-2:]
    parameters = saved[5 : 5 + 5 + len(kernel.cell.extra_parameters)]
    lengths = None
    if batch_sizes is not None:
        lengths = torch.tensor([sum(1 for rows in batch_sizes if rows > row) for row in range(x.shape[1])],
                               device=x.device)
    run = ReferenceEngine().run_layer(
        kernel.cell, unflatten(kernel.cell, parameters), x, h0, c0, lengths, False,
        Precision(precision.compute, precision.state, precision.state),
    )
    inputs = (x, h0, c0, *parameters)
    wanted = [tensor for tensor, needed in zip(inputs, ctx.needs_input_grad[4:], strict=True) if needed]
    outputs = [tensor for tensor in (run.output, run.h, run.c) if tensor is not None]
    grads = iter(torch.autograd.grad(
        outputs, wanted, [d_output, d_h_n, d_c_n][: len(outputs)], create_graph=True, allow_unused=True
    ))
    return None, None, None, None, *(next(grads) if needed else None for needed in ctx.needs_input_grad[4:])


def backward_loop(ctx, d_output: Tensor, d_h_n: Tensor, d_c_n: Tensor | None) -> tuple:
    """FusedLayer's backward: per step the kernel's backward and the product for d h_{t-1}, then
    every parameter's gradient as one large operation over all steps."""
    kernel, batch_sizes, products = ctx.kernel, ctx.batch_sizes, ctx.products
    cell = kernel.cell
    x, gates, hs, cs, cell_outputs, rec, *rest = ctx.saved_tensors
    parameter_count = 5 + len(cell.extra_parameters)
    parameters = tuple(rest[:parameter_count])
    input_saved = tuple(rest[parameter_count : parameter_count + ctx.input_saved_count])
    tape_start = parameter_count + ctx.input_saved_count
    tape = dict(zip(ctx.tape_names, rest[tape_start : tape_start + len(ctx.tape_names)], strict=True))
    weights = unflatten(cell, parameters)
    steps, batch_size, gate_size = gates.shape

    new = dict(dtype=gates.dtype, device=gates.device)
    d_gates = ctx.allocate(gates.shape, **new)
    d_rec = d_gates if rec is None else ctx.allocate(rec.shape, **new)
    dh = d_h_n.clone()
    dc = None if cs is None else d_c_n.clone()
    d_hs = None if cell_outputs is None else ctx.allocate(hs[1:].shape, **new)
    hidden_size = gate_size // cell.num_gates
    grad_tape = {
        name: ctx.allocate(steps, batch_size, size, **new) for name, size in kernel.grad_tape(hidden_size).items()
    }
    # dh holds d loss / d h_t for the rows running at step t: d_output[t] plus what flows
    # back from step t + 1, or d_h_n for a sequence whose last step is t.
    rows = [batch_size] * steps if batch_sizes is None else batch_sizes
    dh[: rows[-1]] += d_output[-1, : rows[-1]]
    steps_views = step_views(batch_sizes, gates, rec, hs, cs, cell_outputs, tape)
    grads_views = grad_views(batch_sizes, d_gates, d_rec, grad_tape)
    for t in reversed(range(steps)):
        step, grads, running = steps_views[t], grads_views[t], rows[t]
        dh_t = dh[:running]
        if weights.weight_hr is not None:  # h_t = W_hr m_t
            d_hs[t, :running] = dh_t
            dh_t = products(dh_t, weights.weight_hr).to(dh.dtype)
        direct = kernel.backward(dh_t, None if dc is None else dc[:running], step, grads, weights)
        previous_output = None if t == 0 else d_output[t - 1, :running]
        products.into(dh[:running], grads.d_rec, weights.weight_hh, previous_output)
        if t > 0 and rows[t - 1] > running:  # sequences whose last step is t - 1
            dh[running : rows[t - 1]] += d_output[t - 1, running : rows[t - 1]]
        if direct is not None:
            dh[:running] += direct

    flat = steps * batch_size
    grads = {
        "weight_hh": products(d_rec.view(flat, gate_size).t(), hs[:-1].flatten(0, 1)),
        **kernel.parameter_grads(FusedGrads(d_gates, d_rec, grad_tape), rec, cs, tape, weights),
    }
    workspace = None if d_rec is d_gates else d_rec.view(flat, gate_size)  # d_rec is spent
    d_projection, input_grads = kernel.input_backward(d_gates.view(flat, gate_size), input_saved, weights, workspace)
    grads.update(input_grads)
    d_x = products(d_projection, weights.weight_ih).view_as(x) if ctx.needs_input_grad[4] else None
    grads["weight_ih"] = products(d_projection.t(), x.flatten(0, 1))
    if weights.weight_hr is not None:
        grads["weight_hr"] = products(d_hs.flatten(0, 1).t(), cell_outputs.flatten(0, 1))
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]
    names += [parameter.name for parameter in cell.extra_parameters]
    parameter_grads = [
        None if parameter is None else grads[name] for name, parameter in zip(names, parameters, strict=True)
    ]
    return None, None, None, None, d_x, dh, dc, *parameter_grads

def step_views(
    batch_sizes: list[int] | None,
    gates: Tensor,
    rec: Tensor | None,
    hs: Tensor,
    cs: Tensor | None,
    cell_outputs: Tensor | None,
    tape: dict[str, Tensor],
) -> list[FusedStep]:
    """Every step's views of the forward buffers, each restricted to the running sequences."""
    steps = gates.shape[0]
    states = per_step(batch_sizes, hs[:-1])
    new_states = per_step(batch_sizes, hs[1:])
    cells = [None] * steps if cs is None else per_step(batch_sizes, cs[:-1])
    new_cells = [None] * steps if cs is None else per_step(batch_sizes, cs[1:])
    outputs = new_states if cell_outputs is None else per_step(batch_sizes, cell_outputs)
    recs = [None] * steps if rec is None else per_step(batch_sizes, rec)
    tapes = per_step_dicts(batch_sizes, tape, steps)
    return list(
        map(FusedStep, per_step(batch_sizes, gates), recs, states, cells, outputs, new_cells, tapes, new_states)
    )


def grad_views(
    batch_sizes: list[int] | None, d_gates: Tensor, d_rec: Tensor, grad_tape: dict[str, Tensor]
) -> list[FusedGrads]:
    """Every step's views of the backward buffers, each restricted to the running sequences."""
    steps = d_gates.shape[0]
    return list(
        map(FusedGrads, per_step(batch_sizes, d_gates), per_step(batch_sizes, d_rec),
            per_step_dicts(batch_sizes, grad_tape, steps))
    )


def per_step(batch_sizes: list[int] | None, buffer: Tensor) -> list[Tensor]:
    """buffer[t, :batch_sizes[t]] for every step t (one unbind when every sequence runs)."""
    if batch_sizes is None:
        return list(buffer.unbind(0))
    return [buffer[t, :rows] for t, rows in enumerate(batch_sizes)]


def per_step_dicts(batch_sizes: list[int] | None, buffers: dict[str, Tensor], steps: int) -> list[dict[str, Tensor]]:
    """per_step of each named buffer, as one dict per step."""
    columns = {name: per_step(batch_sizes, buffer) for name, buffer in buffers.items()}
    return [{name: column[t] for name, column in columns.items()} for t in range(steps)]
