"""One time step on the fused kernels, for the cell modules (`lstmkit.LSTMCell`, ...).

A cell module is called once per step from the user's own loop, so the step is its own
autograd.Function (called only where a gradient is wanted: under no_grad it runs the forward
alone): forward, the two matrix products (W_ih x and W_hh h) and the cell's
`FusedKernel.forward` in place into buffers of one step; backward, the kernel's hand-derived
`FusedKernel.backward`, then the gradients of x, h and every parameter as single products.
The kernels are the fused engine's, unchanged: a step here is the engine's loop with T = 1.

Double backward (`create_graph=True`): autograd runs a Function's backward with grad mode on
exactly when it builds a graph of the gradients. The hand-derived backward writes in place
and so is not differentiable; in that case backward instead recomputes the step with the
cell's `step` (the reference engine) from the saved inputs and differentiates it with
autograd, which gives gradients that are themselves differentiable. A plain backward never
pays for this.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.cells import Cell, LayerWeights
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep
from lstmkit.engines.fused.layer import KERNELS, composed_backward, flatten, local_inputs, unflatten
from lstmkit.engines.fused.products import Products
from lstmkit.engines.precision import (
    HALF_DTYPES, Precision, autocast, autocast_dtype, autocast_on, cast_weights, precision_for,
)
from lstmkit.engines.reference import ReferenceEngine


class StepResult(NamedTuple):
    """One step: h' and c' (None without a cell state) in the output dtype, and the cell's
    activations in `cell.trace_names` order, each (B, H) in the state dtype (None unless asked)."""

    h: Tensor
    c: Tensor | None
    gates: tuple[Tensor, ...] | None


def run_step(
    cell: Cell, weights: LayerWeights, x: Tensor, h: Tensor, c: Tensor | None, return_gates: bool,
    kernels: dict[str, type[FusedKernel]] = KERNELS,
) -> StepResult:
    """One step of `cell` from (h, c) on input x (B, I), h (B, H), c (B, H) or None, in the
    precision a cell module runs in (`step_precision`), on the point-wise kernel of `kernels`
    (the fused engine's; the Triton engine's run the same step as one kernel each way)."""
    dtype = weights.weight_ih.dtype
    autocasting = autocast_on(x.device.type)
    kernel = kernel_for(cell, kernels)
    h, c = h.contiguous(), None if c is None else c.contiguous()  # the Triton kernels read them row by row
    # the common case, kept short: it runs every step
    if not autocasting and dtype not in HALF_DTYPES and all(extra is None or extra.dtype is dtype
                                                            for extra in weights.extra.values()):
        # x, h and c have the parameters' dtype (the module checked), and so has every result
        h_new, c_new, gates = fused_cell_step(
            kernel, Precision(dtype, dtype, dtype, dtype), return_gates, x, h, c, *flatten(cell, weights))
    else:
        precision = step_precision(cell, dtype, x.device, (h if c is None else c).dtype)
        weights = cast_weights(weights, precision.compute, precision.state)
        with autocast(x.device.type, enabled=False):
            h_new, c_new, gates = fused_cell_step(
                kernel, precision, return_gates, x.to(precision.compute), h.to(precision.state),
                None if c is None else c.to(precision.state), *flatten(cell, weights),
            )
        h_new, c_new = h_new.to(precision.output), None if c_new is None else c_new.to(precision.final_cell)
    traced = None
    if return_gates:
        traced = tuple(gates.chunk(cell.num_gates, -1)) if cell.trace_names else ()
    return StepResult(h_new, c_new, traced)


def step_precision(
    cell: Cell, parameter_dtype: torch.dtype, device: torch.device, state_dtype: torch.dtype
) -> Precision:
    """A layer's precision (`precision_for`), except the outputs under CPU autocast: for every
    cell but the Elman RNN, the autocast dtype promoted with the state's (c where the cell has
    one, else h; `state_dtype`), as torch.nn.LSTMCell and GRUCell return there (float32 from a
    float32 state, so that the state a loop feeds back stays in float32)."""
    precision = precision_for(cell, parameter_dtype, device)
    autocasting = autocast_dtype(device)
    if device.type == "cpu" and autocasting is not None and parameter_dtype != torch.float64 and cell.name != "rnn":
        promoted = torch.promote_types(autocasting, state_dtype)
        return precision._replace(output=promoted, final_cell=promoted)
    return precision


KERNEL_OF_CELL: dict[tuple[type[FusedKernel], Cell], FusedKernel] = {}


def kernel_for(cell: Cell, kernels: dict[str, type[FusedKernel]]) -> FusedKernel:
    """The kernel of `cell` among `kernels`, one per kernel type and cell (cells are frozen,
    so hashable); a plain dict, which torch.compile reads as it is (it only warns about
    functools caches)."""
    key = (kernels[cell.name], cell)
    if key not in KERNEL_OF_CELL:
        KERNEL_OF_CELL[key] = kernels[cell.name](cell)
    return KERNEL_OF_CELL[key]


def fused_cell_step(kernel: FusedKernel, precision: Precision, return_gates: bool, x: Tensor, h: Tensor,
                    c: Tensor | None, *parameters: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """`FusedCellStep`'s h', c' and gates; without autograd's bookkeeping where no gradient is
    wanted (under `torch.no_grad()`, or no input requiring one: an agent acting, a greedy
    decoder), which at batch 1 took about a fifth of a step's time."""
    if torch.is_grad_enabled() and any(
            tensor is not None and tensor.requires_grad for tensor in (x, h, c, *parameters)):
        return FusedCellStep.apply(kernel, precision, return_gates, x, h, c, *parameters)
    h_new, c_new, gates, _ = step_forward(kernel, precision, return_gates, x, h, c, parameters)
    return h_new, c_new, gates


def step_forward(kernel: FusedKernel, precision: Precision, return_gates: bool, x: Tensor, h: Tensor,
                 c: Tensor | None, parameters: tuple) -> tuple[Tensor, Tensor | None, Tensor | None, tuple]:
    """The step's forward: h', c', a copy of the gate activations (with `return_gates`), and
    what backward needs (`saved_step` reads it back)."""
    cell = kernel.cell
    weights = unflatten(cell, parameters)
    products = Products(precision.compute, precision.state)
    hidden_size = weights.weight_hh.shape[0] // cell.num_gates
    new = dict(dtype=precision.state, device=x.device)

    rec = product = None
    # a kernel that adds W_hh h itself takes b_hh with it: no launch of its own for b_ih + b_hh
    adds_product = kernel.recurrence == "gates" and kernel.adds_product
    input_weights = weights._replace(bias_hh=None) if adds_product else weights
    gates, input_saved = kernel.project_input(x, input_weights, products)
    if adds_product:
        product = torch.empty_like(gates)
        products.into(product, h, weights.weight_hh.t(), weights.bias_hh)
    elif kernel.recurrence == "gates":
        products.accumulate(gates, h, weights.weight_hh.t())
    else:
        rec = torch.empty_like(gates)
        bias = weights.bias_hh if kernel.recurrence == "biased" else None
        products.into(rec, h, weights.weight_hh.t(), bias)
    h_new = torch.empty(x.shape[0], hidden_size, **new)
    c_new = None if c is None else torch.empty(x.shape[0], hidden_size, **new)
    tape = {name: torch.empty(x.shape[0], size, **new) for name, size in kernel.tape(hidden_size).items()}
    step = FusedStep(
        gates, rec, h, c, h_new, c_new, tape, h_new, product, None if product is None else h_new,
        blocks=kernel.cut_blocks(gates),
    )
    kernel.forward(step, weights)
    traced_gates = gates.clone() if return_gates else None
    kept_h_new = h_new if kernel.reads_h_new else None
    saved = (x, h, c, gates, rec, kept_h_new, c_new, *parameters, *input_saved, *tape.values())
    return h_new, c_new, traced_gates, (saved, list(tape), len(input_saved))


class FusedCellStep(torch.autograd.Function):
    """One step of a cell: the fused kernel forward, its hand-derived backward."""

    @staticmethod
    def forward(ctx, kernel, precision, return_gates, x, h, c, *parameters):
        h_new, c_new, traced_gates, (saved, ctx.tape_names, ctx.input_saved_count) = step_forward(
            kernel, precision, return_gates, x, h, c, parameters)
        ctx.kernel, ctx.precision = kernel, precision
        ctx.save_for_backward(*saved)
        if traced_gates is not None:
            ctx.mark_non_differentiable(traced_gates)
        return h_new, c_new, traced_gates

    @staticmethod
    def backward(ctx, d_h_new, d_c_new, _d_gates):
        if composed_backward(d_h_new, d_c_new):
            return differentiable_backward(ctx, d_h_new, d_c_new)
        if autocast_on(d_h_new.device.type):
            with autocast(d_h_new.device.type, enabled=False):
                return fused_backward(ctx, d_h_new, d_c_new)
        return fused_backward(ctx, d_h_new, d_c_new)


def saved_step(ctx) -> tuple[FusedStep, LayerWeights, tuple[Tensor | None, ...], tuple, Tensor]:
    """What forward saved: the step's buffers, the weights, the flat parameters, what the
    kernel's `input_backward` needs, and x."""
    kernel = ctx.kernel
    x, h, c, gates, rec, h_new, c_new, *rest = ctx.saved_tensors
    parameter_count = 5 + len(kernel.cell.extra_parameters)
    parameters = tuple(rest[:parameter_count])
    input_saved = tuple(rest[parameter_count : parameter_count + ctx.input_saved_count])
    tape = dict(zip(ctx.tape_names, rest[parameter_count + ctx.input_saved_count :], strict=True))
    step = FusedStep(gates, rec, h, c, h_new, c_new, tape, h_new, blocks=kernel.cut_blocks(gates))
    return step, unflatten(kernel.cell, parameters), parameters, input_saved, x


def fused_backward(ctx, d_h_new: Tensor, d_c_new: Tensor | None) -> tuple:
    """The kernel's backward, then d x, d h and every parameter's gradient, as the fused
    engine's `backward_loop` does for one step."""
    kernel, products = ctx.kernel, Products(ctx.precision.compute, ctx.precision.state)
    if not products.mixed:
        products = torch.mm  # the same products, without casts to the dtype they already have
    step, weights, parameters, input_saved, x = saved_step(ctx)
    hidden_size = step.gates.shape[-1] // kernel.cell.num_gates
    d_gates = torch.empty_like(step.gates)
    d_rec = d_gates if step.rec is None else torch.empty_like(step.rec)
    grad_tape = {
        name: d_gates.new_empty(d_gates.shape[0], size) for name, size in kernel.grad_tape(hidden_size).items()
    }
    grads = FusedGrads(d_gates, d_rec, grad_tape, blocks=kernel.cut_blocks(d_gates))
    if step.c is None:
        dc = read_dc = None
    elif kernel.writes_dc_apart:  # the kernel reads d c' and writes d c into a buffer of its own
        dc, read_dc = torch.empty_like(step.c), d_c_new
        grads = grads._replace(d_c=dc)
    else:  # the kernel turns d c' into d c in place, in a copy: another node may hold d c'
        dc = read_dc = d_c_new.clone()
    direct = kernel.backward(d_h_new, read_dc, step, grads, weights)

    d_h = None
    if ctx.needs_input_grad[4] and direct is not None and products is torch.mm:
        d_h = direct.addmm_(d_rec, weights.weight_hh)  # into the kernel's own buffer: one launch, not two
    elif ctx.needs_input_grad[4]:
        d_h = products(d_rec, weights.weight_hh).to(step.h.dtype)
        if direct is not None:
            d_h += direct
    named = {
        "weight_hh": products(d_rec.t(), step.h),
        **kernel.parameter_grads(grads, step.rec, step.c, step.c_new, step.tape, weights),
    }
    d_projection, input_grads = kernel.input_backward(d_gates, input_saved, weights)
    named.update(input_grads)
    d_x = products(d_projection, weights.weight_ih) if ctx.needs_input_grad[3] else None
    named["weight_ih"] = products(d_projection.t(), x)
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"]
    names += [parameter.name for parameter in kernel.cell.extra_parameters]
    parameter_grads = [
        None if parameter is None else named[name] for name, parameter in zip(names, parameters, strict=True)
    ]
    return None, None, None, d_x, d_h, dc, *parameter_grads


def differentiable_backward(ctx, d_h_new: Tensor, d_c_new: Tensor | None) -> tuple:
    """The gradients by autograd through the cell's `step` (the reference engine), recomputed
    from the saved inputs (`composed_backward`), with a graph of their own for
    `create_graph=True`."""
    kernel, precision = ctx.kernel, ctx.precision
    step, _, parameters, _, x = saved_step(ctx)
    create_graph = torch.is_grad_enabled()  # off for batched gradients without create_graph
    with torch.enable_grad():
        x, h, c, *parameters = local_inputs(x, step.h, step.c, *parameters)
        run = ReferenceEngine().run_layer(
            kernel.cell, unflatten(kernel.cell, tuple(parameters)), x.unsqueeze(0), h, c, None, False,
            precision._replace(output=precision.state, final_cell=precision.state),
        )
        outputs, grad_outputs = [run.h], [d_h_new]
        if run.c is not None:
            outputs.append(run.c)
            grad_outputs.append(d_c_new)
        candidates = (x, h, c, *parameters)
        wanted = [tensor for tensor, needed in zip(candidates, ctx.needs_input_grad[3:], strict=True) if needed]
        found = iter(torch.autograd.grad(outputs, wanted, grad_outputs, create_graph=create_graph, allow_unused=True))
    grads = [next(found) if needed else None for needed in ctx.needs_input_grad[3:]]
    return None, None, None, *grads
