"""The fused engine: one `torch.library` custom op per layer and direction, backward by hand.

Forward: the input projections of all T steps as one matrix product; then per step one
recurrent matrix product and the cell's point-wise step, written in place into buffers
allocated once. Sequences of a padded batch are sorted by length, longest first, so that step
t works on the first `batch_sizes[t]` rows only (as packed sequences do): no masking.

What forward keeps for backward (`LayerTape`): the gate activations of every step (written
over the input projections); h_0..h_T and c_0..c_T; the recurrent projections for cells that
take them apart ("biased", "raw"); the unprojected outputs with proj_size; and the per-step
buffers the cell asks for (e.g. tanh(c_t)); the input x and the parameters are the op's own.

Backward: per step (last to first) the cell's point-wise backward and one matrix product for
d h_{t-1} (two with proj_size); then the gradients of the input, weights, biases and the
cell's extra parameters as single large operations over all steps.

Both are custom ops (`lstmkit::fused_layer`, `lstmkit::fused_layer_backward`) with fake
implementations that give their outputs' shapes without running the loop, and the backward
is the forward's autograd formula. torch.compile therefore sees one op per layer and
direction, traces around it, and never into the buffers the loop writes in place. What the
ops take besides tensors is plain data: the kernel as a key (`kernel_key`), the dtypes. The
batch sizes per step come as an int64 CPU tensor, whose values the compiler does not guard on
(each new set of lengths would compile the call again); being the ops' first tensor argument,
it also makes Inductor place a padded call on the CPU, outside the CUDA graphs of
mode="reduce-overhead", whose replays would keep the first call's batch sizes.
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.cells import Cell, LayerWeights, make_cell
from lstmkit.engines.base import LayerEngine, LayerNoise, LayerRun, own_cell
from lstmkit.engines.fused.graphs import run_captured
from lstmkit.engines.fused.gru import GRUKernel
from lstmkit.engines.fused.kernel import FusedGrads, FusedKernel, FusedStep
from lstmkit.engines.fused.layernorm import LayerNormKernel
from lstmkit.engines.fused.lstm import CIFGKernel, LSTMKernel, PeepholeKernel
from lstmkit.engines.fused.products import Products
from lstmkit.engines.fused.rnn import RNNKernel
from lstmkit.engines.precision import Precision, autocast, cast_weights
from lstmkit.engines.reference import ReferenceEngine

KERNELS: dict[str, type[FusedKernel]] = {
    "rnn": RNNKernel, "lstm": LSTMKernel, "gru": GRUKernel, "peephole": PeepholeKernel, "cifg": CIFGKernel,
    "layernorm": LayerNormKernel,
}
TORCH_NN_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
X_POSITION, PARAMETERS_POSITION = 6, 9  # where fused_layer takes x and the parameters


class FusedEngine(LayerEngine):
    """Per layer and direction, one `fused_layer` op with the cell's FusedKernel."""

    name = "fused"

    def kernels(self) -> dict[str, type[FusedKernel]]:
        """The point-wise kernel of each cell, by cell name."""
        return KERNELS

    def unsupported(self, cell: Cell, device: torch.device | None, cell_steps: bool = False) -> str | None:
        reason = own_cell(cell, self.name)
        if reason:
            return reason
        if cell.name not in KERNELS:
            return f"cell {cell.name!r} has no {self.name} kernel ({self.name} runs {', '.join(KERNELS)})"
        return None

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
        """Run `cell` over `inputs` (T, B, I); the contract of `LayerEngine.run_layer`."""
        with autocast(inputs.device.type, enabled=False):
            run = run_fused(
                kernel_key(self.kernels()[cell.name], cell), cell,
                cast_weights(weights, precision.compute, precision.state), inputs.to(precision.compute),
                h0.to(precision.state), None if c0 is None else c0.to(precision.state), lengths, return_gates,
                precision, noise,
            )
        return run._replace(output=run.output.to(precision.output), h=run.h.to(precision.output),
                            c=None if run.c is None else run.c.to(precision.final_cell))


def kernel_key(kernel_type: type[FusedKernel], cell: Cell) -> str:
    """The kernel `kernel_type(cell)` as the ops take it: a Python literal from which
    `kernel_from_key` builds it again, in this process or another. Plain string formatting,
    which torch.compile traces (and guards on the cell's options)."""
    options = ", ".join(f"{name!r}: {value!r}" for name, value in cell.options().items())
    return f"({kernel_type.__module__!r}, {kernel_type.__qualname__!r}, {cell.name!r}, {{{options}}})"


@cache
def kernel_from_key(key: str) -> FusedKernel:
    """The kernel `kernel_key` names (one per key: kernels hold no tensors)."""
    module, qualname, cell_name, options = ast.literal_eval(key)
    return getattr(importlib.import_module(module), qualname)(make_cell(cell_name, **options))


def run_fused(
    kernel: str,
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
    """The layer with inputs and product weights in the compute dtype, the state, biases,
    extra parameters and `noise` in the state dtype; outputs in the state dtype."""
    steps, batch_size = inputs.shape[:2]
    noise = LayerNoise() if noise is None else LayerNoise(*(
        None if part is None else part.to(precision.state) for part in noise))
    order = batch_sizes = None
    if lengths is not None and bool((lengths < steps).any()):
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        # step t runs the sequences longer than t; a tensor, whose values a compiled call does not
        # guard on (as a list of ints, each new set of lengths compiled the call again)
        batch_sizes = (sorted_lengths.cpu().unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1)
        inputs, h0 = inputs.index_select(1, order), h0.index_select(0, order)
        c0 = None if c0 is None else c0.index_select(0, order)
        noise = sorted_noise(noise, order)
    given, parameters = given_parameters(cell, weights)
    hs, finals, traced, _ = torch.ops.lstmkit.fused_layer(
        kernel, batch_sizes, return_gates, precision.compute, precision.state, given, inputs, h0, c0, parameters,
        *noise,
    )
    output, h_n, c_n = hs[1:], finals[0], finals[1] if cell.has_cell_state else None
    gates, cell_states = (traced[0], traced[1] if cell.has_cell_state else None) if return_gates else (None, None)
    if order is not None:
        restore = torch.argsort(order)
        output, h_n = output.index_select(1, restore), h_n.index_select(0, restore)
        c_n = None if c_n is None else c_n.index_select(0, restore)
        if return_gates:
            gates = gates.index_select(1, restore)
            cell_states = None if cell_states is None else cell_states.index_select(1, restore)
    trace = None
    if return_gates:
        if lengths is not None:
            valid = (torch.arange(steps, device=inputs.device).unsqueeze(1) < lengths).unsqueeze(-1)
            gates = gates.masked_fill(~valid, 0)
        trace = tuple(gates.chunk(cell.num_gates, -1)) if cell.trace_names else ()
    return LayerRun(output, h_n, c_n, trace, cell_states)


def sorted_noise(noise: LayerNoise, order: Tensor) -> LayerNoise:
    """`noise` with its rows (the batch) in `order`, as the inputs are sorted; a scalar keep
    (evaluation) is the same for every row."""

    def rows_sorted(part: Tensor | None, batch_dim: int) -> Tensor | None:
        return part if part is None or part.dim() == 0 else part.index_select(batch_dim, order)

    return LayerNoise(rows_sorted(noise.recurrent_mask, 0), rows_sorted(noise.keep_hidden, 1),
                      rows_sorted(noise.keep_cell, 1))


def parameter_names(cell: Cell) -> list[str]:
    """The names of a layer's parameters in `flatten`'s order (without the `_l{k}` suffix)."""
    return [*TORCH_NN_PARAMETERS, *(parameter.name for parameter in cell.extra_parameters)]


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


def given_parameters(cell: Cell, weights: LayerWeights) -> tuple[list[bool], list[Tensor]]:
    """The weights as op arguments, which hold no None: which of `flatten`'s are given, and
    those given."""
    flat = flatten(cell, weights)
    return [tensor is not None for tensor in flat], [tensor for tensor in flat if tensor is not None]


def weights_from(cell: Cell, given: list[bool], parameters: list[Tensor]) -> LayerWeights:
    """Inverse of `given_parameters`."""
    tensors = iter(parameters)
    return unflatten(cell, tuple(next(tensors) if present else None for present in given))


class LayerTape(NamedTuple):
    """The forward's buffers, which backward reads (the module docstring says what each holds).

    gates: (T, B, G*H); hs: (T + 1, B, H_out); cs: (T + 1, B, H) or None; cell_outputs:
    (T, B, H) with proj_size, else None; rec: (T, B, G*H) (or the kernel's `rec_size`
    features), or None for "gates"; new_hs, new_cs: with zoneout of h (of c), the cell's own
    h̃_t (c̃_t) before zoneout, (T, B, ·), else None (the cell's new state is then hs[1:],
    cs[1:] itself); input_saved: what the kernel's `input_backward` needs; tape: the kernel's
    per-step buffers, (T, B, n).
    """

    gates: Tensor
    hs: Tensor
    cs: Tensor | None
    cell_outputs: Tensor | None
    rec: Tensor | None
    new_hs: Tensor | None
    new_cs: Tensor | None
    input_saved: tuple[Tensor, ...]
    tape: dict[str, Tensor]

    def during(self, start: int, stop: int) -> LayerTape:
        """The buffers of steps [start, stop): hs and cs hold the states before and after them."""
        def steps(buffer: Tensor | None) -> Tensor | None:
            return None if buffer is None else buffer[start:stop]

        states = slice(start, stop + 1)
        return self._replace(gates=self.gates[start:stop], hs=self.hs[states],
                             cs=None if self.cs is None else self.cs[states], cell_outputs=steps(self.cell_outputs),
                             rec=steps(self.rec), new_hs=steps(self.new_hs), new_cs=steps(self.new_cs),
                             tape={name: buffer[start:stop] for name, buffer in self.tape.items()})

    def saved(self) -> list[Tensor]:
        """Every buffer but hs, as the op returns them (`from_saved` reads them back)."""
        optional = (self.gates, self.cs, self.cell_outputs, self.rec, self.new_hs, self.new_cs)
        return [*(tensor for tensor in optional if tensor is not None), *self.input_saved, *self.tape.values()]

    @classmethod
    def from_saved(
        cls, kernel: FusedKernel, hs: Tensor, saved: list[Tensor], has_projection: bool, noise: LayerNoise
    ) -> LayerTape:
        """Inverse of `saved`."""
        rest = iter(saved)
        gates = next(rest)
        cs = next(rest) if kernel.cell.has_cell_state else None
        cell_outputs = next(rest) if has_projection else None
        rec = None if kernel.recurrence == "gates" else next(rest)
        new_hs = None if noise.keep_hidden is None else next(rest)
        new_cs = None if noise.keep_cell is None else next(rest)
        rest = list(rest)
        names = list(kernel.tape(gates.shape[-1] // kernel.cell.num_gates))
        split = len(rest) - len(names)
        return cls(gates, hs, cs, cell_outputs, rec, new_hs, new_cs, tuple(rest[:split]),
                   dict(zip(names, rest[split:], strict=True)))

    @property
    def new_cells(self) -> Tensor | None:
        """c̃_1..c̃_T, the cell's own new states (T, B, H), before any zoneout."""
        if self.cs is None:
            return None
        return self.cs[1:] if self.new_cs is None else self.new_cs


@torch.library.custom_op("lstmkit::fused_layer", mutates_args=())
def fused_layer(
    kernel: str,
    batch_sizes: Tensor | None,
    return_gates: bool,
    compute: torch.dtype,
    state: torch.dtype,
    given: list[bool],
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    parameters: list[Tensor],
    recurrent_mask: Tensor | None,
    keep_hidden: Tensor | None,
    keep_cell: Tensor | None,
) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """One layer and direction of `kernel` (a `kernel_key`) over x (T, B, I) from h0, c0 (B, ·),
    with the parameters `given` (`given_parameters`), the products in `compute`, the rest in
    `state`; with `batch_sizes` (T,) on the CPU, step t runs the first batch_sizes[t] rows; with
    the masks, recurrent dropout and zoneout (`LayerNoise`). Returns h_0..h_T (T + 1, B, H_out); the
    final states [h_n, c_n]; the activations [gates (T, B, G*H), c (T, B, H)] if
    return_gates, else []; the buffers backward reads (`LayerTape.saved`). On CUDA, replayed
    from a captured graph where one exists (`graphs.run_captured`)."""
    arguments = (kernel, batch_sizes, return_gates, compute, state, given, x, h0, c0, parameters,
                 recurrent_mask, keep_hidden, keep_cell)
    return run_captured(layer_forward, arguments, x, batch_sizes)


def layer_forward(kernel, batch_sizes, return_gates, compute, state, given, x, h0, c0, parameters,
                  recurrent_mask, keep_hidden, keep_cell):
    """fused_layer, run step by step."""
    kernel_object, products = kernel_from_key(kernel), Products(compute, state)
    weights = weights_from(kernel_object.cell, given, parameters)
    noise = LayerNoise(recurrent_mask, keep_hidden, keep_cell)
    tape = forward_tape(kernel_object, batch_sizes is not None, products, x, h0, c0, weights, noise)
    forward_loop(kernel_object, running_rows(batch_sizes), products, tape, weights, noise)
    return layer_outputs(tape, batch_sizes, return_gates)


def running_rows(batch_sizes: Tensor | None) -> list[int] | None:
    """The loops' batch_sizes: ints, read once a call."""
    return None if batch_sizes is None else batch_sizes.tolist()


@fused_layer.register_fake
def fused_layer_shapes(kernel, batch_sizes, return_gates, compute, state, given, x, h0, c0, parameters,
                       recurrent_mask, keep_hidden, keep_cell):
    """fused_layer's outputs with their shapes and dtypes: its buffers, the loop not run."""
    kernel_object, products = kernel_from_key(kernel), Products(compute, state)
    weights = weights_from(kernel_object.cell, given, parameters)
    noise = LayerNoise(recurrent_mask, keep_hidden, keep_cell)
    tape = forward_tape(kernel_object, batch_sizes is not None, products, x, h0, c0, weights, noise)
    return layer_outputs(tape, batch_sizes, return_gates)


def allocator(padded: bool):
    """How the loops allocate their buffers: with every sequence running every step, each row
    is written before it is read; in a `padded` batch (batch sizes), the rows past a sequence's
    end must read as zero."""
    return torch.zeros if padded else torch.empty


def forward_tape(
    kernel: FusedKernel,
    padded: bool,
    products: Products,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weights: LayerWeights,
    noise: LayerNoise,
) -> LayerTape:
    """The forward's buffers, with the input projections of all steps computed and h_0, c_0 in
    place (zeros in a `padded` batch, `allocator`); `forward_loop` writes the rest."""
    cell = kernel.cell
    steps, batch_size, _ = x.shape
    hidden_size = weights.weight_hh.shape[0] // cell.num_gates
    gate_size = cell.num_gates * hidden_size
    new = dict(dtype=products.state, device=x.device)
    allocate = allocator(padded)

    pre, input_saved = kernel.project_input(x.flatten(0, 1), weights, products)
    hs = allocate(steps + 1, batch_size, h0.shape[-1], **new)
    cs = allocate(steps + 1, batch_size, hidden_size, **new) if c0 is not None else None
    hs[0] = h0
    if cs is not None:
        cs[0] = c0
    cell_outputs = allocate(steps, batch_size, hidden_size, **new) if weights.weight_hr is not None else None
    rec_size = kernel.rec_size(hidden_size, forms_rec=forms_own_product(kernel, products, weights, noise))
    rec = None if kernel.recurrence == "gates" else allocate(steps, batch_size, rec_size, **new)
    new_hs = None if noise.keep_hidden is None else allocate(steps, batch_size, h0.shape[-1], **new)
    new_cs = None if noise.keep_cell is None else allocate(steps, batch_size, hidden_size, **new)
    tape = {name: allocate(steps, batch_size, size, **new) for name, size in kernel.tape(hidden_size).items()}
    return LayerTape(
        pre.view(steps, batch_size, gate_size), hs, cs, cell_outputs, rec, new_hs, new_cs, input_saved, tape
    )


def forward_loop(
    kernel: FusedKernel,
    batch_sizes: list[int] | None,
    products: Products,
    tape: LayerTape,
    weights: LayerWeights,
    noise: LayerNoise,
) -> None:
    """Per step, the recurrent product and the kernel's point-wise step, into `tape`; with
    `noise`, h_{t-1} masked in the product and the new state zoned out."""
    weight_hh_t = weights.weight_hh.t()
    h_low = low_state(kernel, products, tape, weights, noise)
    steps, batch_size = tape.gates.shape[:2]
    recurrent = products.repeated(weight_hh_t, batch_size, steps)
    for step, zone in forward_views(kernel, batch_sizes, tape, noise):
        h_seen = step.h if zone.recurrent_mask is None else step.h * zone.recurrent_mask
        if h_low is not None:                              # the kernel adds W_hh h_{t-1} itself
            running = step.h.shape[0]
            step = step._replace(product=products.product(h_low[:running], weight_hh_t), h_low=h_low[:running])
        elif kernel.recurrence == "gates":
            recurrent.accumulate(step.gates, h_seen)
        else:
            bias = weights.bias_hh if kernel.recurrence == "biased" else None
            recurrent.into(step.rec, h_seen, bias)
        kernel.forward(step, weights)
        if weights.weight_hr is not None:
            products.into(step.h_projected, step.h_new, weights.weight_hr.t())
        if zone.keep_hidden is not None:                   # h_t = h̃ + keep ⊙ (h_{t-1} − h̃)
            torch.lerp(step.h_projected, step.h, zone.keep_hidden, out=zone.h)
        if zone.keep_cell is not None:                     # c_t = c̃ + keep ⊙ (c_{t-1} − c̃)
            torch.lerp(step.c_new, step.c, zone.keep_cell, out=zone.c)


def low_state(
    kernel: FusedKernel, products: Products, tape: LayerTape, weights: LayerWeights, noise: LayerNoise
) -> Tensor | None:
    """h_0 in the compute dtype, for a kernel that adds the recurrent product itself (and then
    writes each h_t so); None where the loop casts and adds: without mixed precision, for a
    kernel that does not add it, or where h_t is changed after the kernel (proj_size, zoneout)
    or masked before the product (recurrent dropout)."""
    if not forms_own_product(kernel, products, weights, noise):
        return None
    return tape.hs[0].to(products.compute)


def forms_own_product(kernel: FusedKernel, products: Products, weights: LayerWeights, noise: LayerNoise) -> bool:
    """Whether the loop hands the kernel the recurrent product to add itself (`low_state`)."""
    return (adds_product(kernel, products) and weights.weight_hr is None
            and noise.recurrent_mask is None and noise.keep_hidden is None)


def adds_product(kernel: FusedKernel, products: Products) -> bool:
    """Whether the kernel adds the recurrent product in the compute dtype itself (mixed
    precision only, `FusedKernel.adds_product`)."""
    return products.mixed and kernel.adds_product


def layer_outputs(
    tape: LayerTape, batch_sizes: Tensor | None, return_gates: bool
) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
    """fused_layer's outputs from its buffers: each a tensor of its own, none a view of another."""
    steps, batch_size = tape.gates.shape[:2]
    states = [tape.hs] if tape.cs is None else [tape.hs, tape.cs]
    if batch_sizes is None:
        finals = [buffer[-1].clone() for buffer in states]  # not [steps]: a compiled call would fix T
    else:
        device = tape.hs.device
        last = batch_sizes.to(device)
        ends = (torch.arange(batch_size, device=device).unsqueeze(0) < last.unsqueeze(1)).sum(0)
        columns = torch.arange(batch_size, device=device)
        finals = [buffer[ends, columns] for buffer in states]
    traced = []
    if return_gates:
        traced = [tape.gates.clone()] if tape.cs is None else [tape.gates.clone(), tape.cs[1:].clone()]
    return tape.hs, finals, traced, tape.saved()


@torch.library.custom_op("lstmkit::fused_layer_backward", mutates_args=())
def fused_layer_backward(
    kernel: str,
    batch_sizes: Tensor | None,
    compute: torch.dtype,
    state: torch.dtype,
    input_grad: bool,
    given: list[bool],
    d_output: Tensor,
    d_finals: list[Tensor],
    x: Tensor,
    parameters: list[Tensor],
    hs: Tensor,
    saved: list[Tensor],
    recurrent_mask: Tensor | None,
    keep_hidden: Tensor | None,
    keep_cell: Tensor | None,
) -> list[Tensor]:
    """fused_layer's backward: from d h_1..h_T (T, B, H_out) and d [h_n, c_n], the gradients
    [d x (when input_grad), d h0, d c0 (with a cell state), d p for each parameter p]. On CUDA,
    replayed from a captured graph where one exists (`graphs.run_captured`)."""
    arguments = (kernel, batch_sizes, compute, state, input_grad, given, d_output, d_finals, x, parameters, hs,
                 saved, recurrent_mask, keep_hidden, keep_cell)
    return run_captured(layer_backward, arguments, x, batch_sizes)


def layer_backward(kernel, batch_sizes, compute, state, input_grad, given, d_output, d_finals, x, parameters, hs,
                   saved, recurrent_mask, keep_hidden, keep_cell):
    """fused_layer_backward, run step by step."""
    kernel_object, products = kernel_from_key(kernel), Products(compute, state)
    weights = weights_from(kernel_object.cell, given, parameters)
    noise = LayerNoise(recurrent_mask, keep_hidden, keep_cell)
    tape = LayerTape.from_saved(kernel_object, hs, saved, weights.weight_hr is not None, noise)
    d_c_n = d_finals[1] if tape.cs is not None else None
    d_x, dh, dc, grads = backward_loop(
        kernel_object, running_rows(batch_sizes), products, tape, weights, noise, x, d_output, d_finals[0], d_c_n,
        input_grad,
    )
    inputs_grads = [grad for grad in (d_x, dh, dc) if grad is not None]
    names = [name for name, present in zip(parameter_names(kernel_object.cell), given, strict=True) if present]
    return [*inputs_grads, *distinct([grads[name] for name in names])]


def distinct(tensors: list[Tensor]) -> list[Tensor]:
    """`tensors`, each one met before cloned: a custom op's outputs may not alias one another,
    and `FusedKernel.parameter_grads` gives both biases one sum where both add alike."""
    seen: set[int] = set()
    result = []
    for tensor in tensors:
        result.append(tensor.clone() if id(tensor) in seen else tensor)
        seen.add(id(tensor))
    return result


@fused_layer_backward.register_fake
def fused_layer_backward_shapes(
    kernel, batch_sizes, compute, state, input_grad, given, d_output, d_finals, x, parameters, hs, saved,
    recurrent_mask, keep_hidden, keep_cell,
):
    """fused_layer_backward's outputs: each gradient has its tensor's shape and dtype."""
    inputs = [x] if input_grad else []
    return [tensor.new_empty(tensor.shape) for tensor in (*inputs, hs[0], *d_finals[1:], *parameters)]


def save_for_backward(ctx, inputs: tuple, output: tuple) -> None:
    """fused_layer's autograd context: the tensors and settings backward needs. The traced
    activations and the saved buffers are outputs no gradient flows into."""
    kernel, batch_sizes, _, compute, state, given, x, h0, c0, parameters, *noise = inputs
    hs, _, traced, saved = output
    ctx.kernel, ctx.compute, ctx.state, ctx.given = kernel, compute, state, given
    ctx.parameter_count = len(parameters)
    ctx.save_for_backward(x, h0, c0, hs, batch_sizes, *LayerNoise(*noise), *parameters, *saved)
    ctx.mark_non_differentiable(*traced, *saved)
    ctx.set_materialize_grads(False)


def fused_layer_gradients(ctx, d_hs: Tensor | None, d_finals: list[Tensor | None], _d_traced, _d_saved) -> tuple:
    """fused_layer's autograd formula: fused_layer_backward, or with create_graph=True, a
    differentiable recomputation (`differentiable_backward`). An output the loss does not use
    has its gradient as zeros."""
    x, h0, c0, hs, batch_sizes, recurrent_mask, keep_hidden, keep_cell, *rest = ctx.saved_tensors
    noise = LayerNoise(recurrent_mask, keep_hidden, keep_cell)
    parameters, saved = rest[: ctx.parameter_count], rest[ctx.parameter_count :]
    d_output = torch.zeros_like(hs[1:]) if d_hs is None else d_hs[1:]
    d_finals = [
        torch.zeros_like(initial) if grad is None else grad  # h_n, c_n have h0's, c0's shapes
        for initial, grad in zip((h0, c0), d_finals, strict=False)
    ]
    input_grad = ctx.needs_input_grad[X_POSITION]
    if composed_backward(d_output, *d_finals):
        d_inputs, d_parameters = differentiable_backward(ctx, batch_sizes, x, h0, c0, parameters, noise, d_output,
                                                         d_finals)
    else:
        with autocast(d_output.device.type, enabled=False):
            grads = iter(torch.ops.lstmkit.fused_layer_backward(
                ctx.kernel, batch_sizes, ctx.compute, ctx.state, input_grad, ctx.given, d_output, d_finals, x,
                parameters, hs, saved, *noise,
            ))
        d_inputs = [next(grads) if input_grad else None, next(grads), None if c0 is None else next(grads)]
        d_parameters = list(grads)
    return None, None, None, None, None, None, *d_inputs, d_parameters, None, None, None


fused_layer.register_autograd(fused_layer_gradients, setup_context=save_for_backward)


def differentiable_backward(
    ctx, batch_sizes: Tensor | None, x: Tensor, h0: Tensor, c0: Tensor | None, parameters: list[Tensor],
    noise: LayerNoise, d_output: Tensor, d_finals: list[Tensor],
) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """fused_layer's backward as a graph, for double backward (gradient penalties, Hessians):
    the layer recomputed by the reference engine's loop under autograd, and differentiated with
    create_graph=True. The same math, so the same gradients; paid only when asked for.
    Returns the gradients of x, h0, c0 and of each parameter (None where not needed)."""
    kernel = kernel_from_key(ctx.kernel)
    lengths = None
    if batch_sizes is not None:  # sequence b runs the steps whose batch size exceeds b
        rows = torch.arange(x.shape[1], device=batch_sizes.device)
        lengths = (batch_sizes.unsqueeze(0) > rows.unsqueeze(1)).sum(1).to(x.device)
    create_graph = torch.is_grad_enabled()  # off for batched gradients without create_graph
    with torch.enable_grad():
        x, h0, c0, *parameters = local_inputs(x, h0, c0, *parameters)
        run = ReferenceEngine().run_layer(
            kernel.cell, weights_from(kernel.cell, ctx.given, parameters), x, h0, c0, lengths, False,
            Precision(ctx.compute, ctx.state, ctx.state, ctx.state), noise,
        )
        needed = [*ctx.needs_input_grad[X_POSITION:PARAMETERS_POSITION], *ctx.needs_input_grad[PARAMETERS_POSITION]]
        inputs = (x, h0, c0, *parameters)
        wanted = [tensor for tensor, needs in zip(inputs, needed, strict=True) if needs]
        outputs = [tensor for tensor in (run.output, run.h, run.c) if tensor is not None]
        found = iter(torch.autograd.grad(outputs, wanted, [d_output, *d_finals], create_graph=create_graph,
                                         allow_unused=True))
    grads = [next(found) if needs else None for needs in needed]
    return grads[:3], grads[3:]


def composed_backward(*grads: Tensor | None) -> bool:
    """Whether a backward must be composed of plain differentiable operations (the reference
    loop, `differentiable_backward`) rather than the kernels: under backward(create_graph=True),
    whose graph is wanted too, or for batched gradients (autograd.grad(is_grads_batched=True),
    jacobian(vectorize=True): a vmap over the backward), which the in-place kernels and the op
    have no batching rule for."""
    batched = getattr(torch._C._functorch, "is_legacy_batchedtensor", lambda tensor: False)
    return (torch.is_grad_enabled() or torch._C._are_functorch_transforms_active()
            or any(grad is not None and batched(grad) for grad in grads))


def local_inputs(*tensors: Tensor | None) -> list[Tensor | None]:
    """Views of an op's inputs (None stays None) to recompute it from and differentiate with
    respect to: the inputs themselves carry their history (h0, or x, from earlier steps or
    calls of the same weights), along which torch.autograd.grad would reach the weights a second
    time and add what the outer backward adds again. A view is differentiable, so the gradients'
    own graph still reaches the inputs (for the second derivative)."""
    return [None if tensor is None else tensor.view_as(tensor) for tensor in tensors]


def backward_loop(
    kernel: FusedKernel,
    batch_sizes: list[int] | None,
    products: Products,
    tape: LayerTape,
    weights: LayerWeights,
    noise: LayerNoise,
    x: Tensor,
    d_output: Tensor,
    d_h_n: Tensor,
    d_c_n: Tensor | None,
    input_grad: bool,
) -> tuple[Tensor | None, Tensor, Tensor | None, dict[str, Tensor]]:
    """Per step the kernel's backward and the product for d h_{t-1}, then every parameter's
    gradient as one large operation over all steps. Returns d x (None unless `input_grad`),
    d h0, d c0 (None without a cell state) and the parameters' gradients by name."""
    cell = kernel.cell
    gates, hs, cs, cell_outputs, rec = tape.gates, tape.hs, tape.cs, tape.cell_outputs, tape.rec
    steps, batch_size, gate_size = gates.shape
    allocate = allocator(batch_sizes is not None)

    new = dict(dtype=gates.dtype, device=gates.device)
    d_gates = allocate(gates.shape, **new)
    d_rec = d_gates if rec is None else allocate(gates.shape, **new)  # rec may keep fewer features
    # running buffers the kernels index row by row (and a refilling kernel writes): contiguous
    dh = d_h_n.clone(memory_format=torch.contiguous_format)
    dc = None if cs is None else d_c_n.clone(memory_format=torch.contiguous_format)
    d_hs = None if cell_outputs is None else allocate(hs[1:].shape, **new)
    hidden_size = gate_size // cell.num_gates
    grad_tape = {
        name: allocate(steps, batch_size, size, **new) for name, size in kernel.grad_tape(hidden_size).items()
    }
    # dh holds d loss / d h_t for the rows running at step t: d_output[t] plus what flows
    # back from step t + 1, or d_h_n for a sequence whose last step is t.
    rows = [batch_size] * steps if batch_sizes is None else batch_sizes
    dh[: rows[-1]] += d_output[-1, : rows[-1]]
    d_low = None
    if adds_product(kernel, products):  # d_rec in the compute dtype too, written by the kernel
        d_low = torch.empty(batch_size, gate_size, dtype=products.compute, device=gates.device)
    recurrent = products.repeated(weights.weight_hh, batch_size, steps)
    # A kernel that refills dh with d_output[t - 1] once it has read it lets the product for
    # d h_{t-1} add into dh in place, where nothing changes dh between the two.
    refills = (kernel.refills_dh and noise.keep_hidden is None and noise.recurrent_mask is None
               and weights.weight_hr is None)
    no_output = None
    if refills:  # step 0 refills zeros (h_0 is no output); the kernels read d_output row by row
        no_output, d_output = dh.new_zeros(dh.shape), d_output.contiguous()
    buffers = FusedGrads(d_gates, d_rec, grad_tape)
    for t, step, grads, zone, dh_rows, dc_t, previous_output in backward_views(
            kernel, batch_sizes, tape, noise, buffers, dh, dc, d_output):
        running = rows[t]
        dh_t = dh_rows
        kept_h = kept_c = None
        if zone.keep_hidden is not None:                   # h_t = h̃ + keep ⊙ (h_{t-1} − h̃)
            kept_h = dh_t * zone.keep_hidden               #   d h_{t-1} += keep ⊙ dh
            dh_t = dh_t - kept_h                           #   d h̃ = (1 − keep) ⊙ dh
        if zone.keep_cell is not None:                     # c_t = c̃ + keep ⊙ (c_{t-1} − c̃)
            kept_c = dc_t * zone.keep_cell
            dc_t.sub_(kept_c)
        if weights.weight_hr is not None:  # h̃_t = W_hr m_t
            d_hs[t, :running] = dh_t
            dh_t = products(dh_t, weights.weight_hr).to(dh.dtype)
        if d_low is not None:
            grads = grads._replace(d_low=d_low[:running])
        if refills:
            grads = grads._replace(refill=no_output[:running] if previous_output is None else previous_output)
        direct = kernel.backward(dh_t, dc_t, step, grads, weights)
        if kept_c is not None:
            dc_t.add_(kept_c)
        d_rec_step = grads.d_rec if d_low is None else grads.d_low  # in the compute dtype already, or cast
        if refills:                                        # dh holds d_output[t - 1] (and the direct term)
            recurrent.accumulate(dh_rows, d_rec_step)
        elif zone.recurrent_mask is None:
            recurrent.into(dh_rows, d_rec_step, previous_output)
        else:                                              # the product saw h_{t-1} ⊙ m
            recurrent.into(dh_rows, d_rec_step)
            dh_rows.mul_(zone.recurrent_mask)
            if previous_output is not None:
                dh_rows.add_(previous_output)
        if t > 0 and rows[t - 1] > running:  # sequences whose last step is t - 1
            dh[running : rows[t - 1]] += d_output[t - 1, running : rows[t - 1]]
        if direct is not None:
            dh_rows.add_(direct)
        if kept_h is not None:
            dh_rows.add_(kept_h)

    flat = steps * batch_size
    seen = hs[:-1] if noise.recurrent_mask is None else hs[:-1] * noise.recurrent_mask
    grads = {
        "weight_hh": products(d_rec.view(flat, gate_size).t(), seen.flatten(0, 1)),
        **kernel.parameter_grads(
            FusedGrads(d_gates, d_rec, grad_tape), rec, None if cs is None else cs[:-1], tape.new_cells, tape.tape,
            weights,
        ),
    }
    d_projection, input_grads = kernel.input_backward(d_gates.view(flat, gate_size), tape.input_saved, weights)
    grads.update(input_grads)
    d_x = products(d_projection, weights.weight_ih).view_as(x) if input_grad else None
    grads["weight_ih"] = products(d_projection.t(), x.flatten(0, 1))
    if weights.weight_hr is not None:
        grads["weight_hr"] = products(d_hs.flatten(0, 1).t(), cell_outputs.flatten(0, 1))
    return d_x, dh, dc, grads


# The steps whose views of the buffers are cut at once. A view costs about 1 KB of Python and
# torch bookkeeping: cut for every step of a call at once, they grew its memory by 13-16 KB a
# step whatever the sizes (130 MB for T 10,000 at H 4); a span at a time costs as little time.
VIEW_SPAN = 256


def spans(steps: int) -> list[tuple[int, int]]:
    """[start, stop) of each span of VIEW_SPAN steps, in order."""
    return [(start, min(start + VIEW_SPAN, steps)) for start in range(0, steps, VIEW_SPAN)]


def forward_views(
    kernel: FusedKernel, batch_sizes: list[int] | None, tape: LayerTape, noise: LayerNoise
) -> Iterator[tuple[FusedStep, StepZone]]:
    """Every step's views and zone, first step first, cut a span at a time."""
    for start, stop in spans(tape.gates.shape[0]):
        _, step_parts, zones = span_views(kernel, batch_sizes, tape, noise, start, stop)
        yield from zip(step_parts, zones, strict=True)


def backward_views(
    kernel: FusedKernel, batch_sizes: list[int] | None, tape: LayerTape, noise: LayerNoise, buffers: FusedGrads,
    dh: Tensor, dc: Tensor | None, d_output: Tensor
) -> Iterator[tuple[int, FusedStep, FusedGrads, StepZone, Tensor, Tensor | None, Tensor | None]]:
    """Every step's index, views, views of the gradient `buffers`, zone, running rows of the
    running gradients dh and dc, and d_output[t - 1] at those rows (None at step 0), last step
    first, cut a span at a time."""
    for start, stop in reversed(spans(tape.gates.shape[0])):
        sizes, step_parts, zones = span_views(kernel, batch_sizes, tape, noise, start, stop)
        grad_part = {name: buffer[start:stop] for name, buffer in buffers.tape.items()}
        count = stop - start
        yield from reversed(list(zip(
            range(start, stop), step_parts,
            grad_views(kernel, sizes, buffers.d_gates[start:stop], buffers.d_rec[start:stop], grad_part), zones,
            [dh] * count if sizes is None else [dh[:running] for running in sizes],
            [dc] * count if dc is None or sizes is None else [dc[:running] for running in sizes],
            earlier_outputs(batch_sizes, d_output, start, stop), strict=True)))


def span_views(
    kernel: FusedKernel, batch_sizes: list[int] | None, tape: LayerTape, noise: LayerNoise, start: int, stop: int
) -> tuple[list[int] | None, list[FusedStep], list[StepZone]]:
    """The running rows (None when every sequence runs), views and zones of steps [start, stop)."""
    part, sizes = tape.during(start, stop), None if batch_sizes is None else batch_sizes[start:stop]
    return sizes, step_views(kernel, sizes, part), zone_views(sizes, part, noise_during(noise, start, stop))


def earlier_outputs(batch_sizes: list[int] | None, d_output: Tensor, start: int, stop: int) -> list[Tensor | None]:
    """d_output[t - 1] at step t's running rows, for each step t in [start, stop) (None at step 0,
    whose h_0 is no output)."""
    first = [None] if start == 0 else []
    later = range(max(start, 1), stop)
    if batch_sizes is None:
        return first + list(d_output[later.start - 1 : stop - 1].unbind(0))
    return first + [d_output[t - 1, : batch_sizes[t]] for t in later]


def noise_during(noise: LayerNoise, start: int, stop: int) -> LayerNoise:
    """The regularisers of steps [start, stop): the zoneout masks of those steps (a scalar keep
    and the recurrent mask hold for every step)."""
    def steps(keep: Tensor | None) -> Tensor | None:
        return keep if keep is None or keep.dim() == 0 else keep[start:stop]

    return noise._replace(keep_hidden=steps(noise.keep_hidden), keep_cell=steps(noise.keep_cell))


def step_views(kernel: FusedKernel, batch_sizes: list[int] | None, tape: LayerTape) -> list[FusedStep]:
    """Every step's views of the forward buffers, each restricted to the running sequences."""
    steps = tape.gates.shape[0]
    states = per_step(batch_sizes, tape.hs[:-1])
    new_states = per_step(batch_sizes, tape.hs[1:] if tape.new_hs is None else tape.new_hs)
    cells = [None] * steps if tape.cs is None else per_step(batch_sizes, tape.cs[:-1])
    new_cells = [None] * steps if tape.cs is None else per_step(batch_sizes, tape.new_cells)
    outputs = new_states if tape.cell_outputs is None else per_step(batch_sizes, tape.cell_outputs)
    recs = [None] * steps if tape.rec is None else per_step(batch_sizes, tape.rec)
    tapes = per_step_dicts(batch_sizes, tape.tape, steps)
    blocks = per_step_dicts(batch_sizes, kernel.cut_blocks(tape.gates), steps)
    return [
        FusedStep(*views, blocks=step_blocks) for *views, step_blocks in zip(
            per_step(batch_sizes, tape.gates), recs, states, cells, outputs, new_cells, tapes, new_states, blocks,
            strict=True)
    ]


class StepZone(NamedTuple):
    """One step's regularisers (`LayerNoise`), restricted to the running rows: the recurrent
    mask (b, H_out); how much of h_{t-1} and c_{t-1} the step keeps ((b, ·), or a scalar in
    evaluation); h and c, the views of hs[t + 1] and cs[t + 1] where the zoned-out state goes."""

    recurrent_mask: Tensor | None = None
    keep_hidden: Tensor | None = None
    keep_cell: Tensor | None = None
    h: Tensor | None = None
    c: Tensor | None = None


def zone_views(batch_sizes: list[int] | None, tape: LayerTape, noise: LayerNoise) -> list[StepZone]:
    """Every step's StepZone (all None without noise)."""
    steps = tape.gates.shape[0]
    if all(part is None for part in noise):
        return [StepZone()] * steps
    rows = [tape.gates.shape[1]] * steps if batch_sizes is None else batch_sizes

    def per_row(mask: Tensor | None) -> list[Tensor | None]:
        return [None if mask is None else mask[:running] for running in rows]

    def per_step_keep(keep: Tensor | None) -> list[Tensor | None]:
        return [keep] * steps if keep is None or keep.dim() == 0 else per_step(batch_sizes, keep)

    def zoned(buffer: Tensor | None, keep: Tensor | None) -> list[Tensor | None]:
        return [None] * steps if keep is None else per_step(batch_sizes, buffer[1:])

    return list(map(
        StepZone, per_row(noise.recurrent_mask), per_step_keep(noise.keep_hidden), per_step_keep(noise.keep_cell),
        zoned(tape.hs, noise.keep_hidden), zoned(tape.cs, noise.keep_cell),
    ))


def grad_views(
    kernel: FusedKernel, batch_sizes: list[int] | None, d_gates: Tensor, d_rec: Tensor, grad_tape: dict[str, Tensor]
) -> list[FusedGrads]:
    """Every step's views of the backward buffers, each restricted to the running sequences."""
    steps = d_gates.shape[0]
    return [
        FusedGrads(d_step, d_rec_step, tape, blocks=blocks) for d_step, d_rec_step, tape, blocks in zip(
            per_step(batch_sizes, d_gates), per_step(batch_sizes, d_rec), per_step_dicts(batch_sizes, grad_tape, steps),
            per_step_dicts(batch_sizes, kernel.cut_blocks(d_gates), steps), strict=True)
    ]


def per_step(batch_sizes: list[int] | None, buffer: Tensor) -> list[Tensor]:
    """buffer[t, :batch_sizes[t]] for every step t (one unbind when every sequence runs)."""
    if batch_sizes is None:
        return list(buffer.unbind(0))
    return [buffer[t, :rows] for t, rows in enumerate(batch_sizes)]


def per_step_dicts(batch_sizes: list[int] | None, buffers: dict[str, Tensor], steps: int) -> list[dict[str, Tensor]]:
    """per_step of each named buffer, as one dict per step."""
    columns = {name: per_step(batch_sizes, buffer) for name, buffer in buffers.items()}
    return [{name: column[t] for name, column in columns.items()} for t in range(steps)]
