"""The engine interface: what an engine is given (a `Stack`), and what it returns.

An engine runs a whole recurrent stack (`Engine.run`). Most engines run one layer and
direction at a time (`LayerEngine.run_layer`); the generic loop over layers and directions,
inter-layer dropout and the reversal of backward directions live here, once for all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lstmkit.cells import CELLS, Cell, LayerWeights, is_builtin
from lstmkit.engines.precision import Precision, autocast, lstm_cell_steps, precision_for


# torch 2.8 and later take the reason of a graph break, torch._dynamo.graph_break(msg=...).
GRAPH_BREAK_REASONS = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 8)


def run_eagerly(reason: str) -> Callable[[Callable], Callable]:
    """A decorator: the function, which torch.compile runs eagerly (a graph break, whose error
    under fullgraph=True gives `reason`), as it runs torch.nn's RNNs: for an engine whose kernels
    the compiler cannot trace. Outside the compiler, the function itself: a disabled wrapper
    costs ~10 µs a call, a fifth of a GRU decoder step, and built once, at import, it imported
    the compiler and triton with lstmkit (1.8 s)."""

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def eager(*args, **kwargs):
            if torch.compiler.is_compiling():
                if GRAPH_BREAK_REASONS:  # under fullgraph=True, the error: its own blamed a `disable` call
                    torch._dynamo.graph_break(msg=reason)
                return torch.compiler.disable(function)(*args, **kwargs)
            return function(*args, **kwargs)

        return eager

    return decorate


class LayerRun(NamedTuple):
    """One layer and direction run over a sequence (time-major).

    output: (T, B, H_out), zero at steps past a sequence's length.
    h, c: the final state (c is None for cells without a cell state), taken at each
        sequence's last valid step.
    gates: the cell's activations per step, each (T, B, H), in `cell.trace_names` order;
        None unless asked for.
    cell_states: c' per step, (T, B, H); None unless asked for or for cells without c.
    """

    output: Tensor
    h: Tensor
    c: Tensor | None
    gates: tuple[Tensor, ...] | None
    cell_states: Tensor | None


class StackRun(NamedTuple):
    """A whole stack run over a sequence (time-major).

    output: (T, B, D * H_out), the last layer's output, directions concatenated.
    h_n, c_n: (L * D, B, ·), the final states of every layer and direction (c_n None
        without a cell state).
    trace: per layer and direction, (gates, cell_states) as in LayerRun; None unless asked.
    """

    output: Tensor
    h_n: Tensor
    c_n: Tensor | None
    trace: list[tuple[tuple[Tensor, ...], Tensor | None]] | None


class Regularisation(NamedTuple):
    """A layer's regularisers, all off (0) by default:

    recurrent_dropout p: h_{t-1} · m before the recurrent product, m ∈ {0, 1/(1-p)} drawn once
        per sequence, layer and direction and shared by every step (Gal & Ghahramani 2016).
    input_dropout p: the same on each layer's input x_t.
    zoneout_cell, zoneout_hidden z: each unit keeps its previous value with probability z at
        each step in training, c_t = d ⊙ c_{t-1} + (1 − d) ⊙ c̃_t with d ~ Bernoulli(z); in
        evaluation the expectation, z · c_{t-1} + (1 − z) · c̃_t (Krueger et al. 2017).
    weight_dropout p: DropConnect on weight_hh, one mask per call (Merity et al. 2017).

    The dropouts act in training only; zoneout acts in both modes.
    """

    recurrent_dropout: float = 0.0
    input_dropout: float = 0.0
    zoneout_cell: float = 0.0
    zoneout_hidden: float = 0.0
    weight_dropout: float = 0.0

    def acting(self, training: bool) -> frozenset[str]:
        """The regularisers that change a call in this mode, by option name."""
        names = {name for name in ("recurrent_dropout", "input_dropout", "weight_dropout") if training and getattr(self, name)}
        if self.zoneout_cell or self.zoneout_hidden:
            names.add("zoneout")
        return frozenset(names)


REGULARISERS = frozenset({"recurrent_dropout", "input_dropout", "zoneout", "weight_dropout"})


class LayerNoise(NamedTuple):
    """What the regularisers do to one layer and direction in one call (see Regularisation).

    recurrent_mask: (B, H_out), 0 or 1/(1-p), multiplying h_{t-1} in the recurrent product;
        None when off.
    keep_hidden, keep_cell: how much of the previous h and c each step keeps,
        h_t = h̃_t + keep ⊙ (h_{t-1} − h̃_t): 0/1 masks (T, B, ·) in training, the scalar z
        in evaluation; None when off.
    """

    recurrent_mask: Tensor | None = None
    keep_hidden: Tensor | None = None
    keep_cell: Tensor | None = None


class Packing(NamedTuple):
    """How a padded batch is packed, as torch.nn packs it.

    lengths: (B,) int64 on the data's device, each in [1, T].
    order: (B,) the batch index of each packed row, longest first, on the data's device: the
        input's PackedSequence.sorted_indices, or, for lengths=, those pack_padded_sequence
        gives with enforce_sorted=False. Ties may come in any order (torch.sort is not stable
        past 16 rows); torch.nn's inter-layer dropout draws its masks over the rows in this one.
    """

    lengths: Tensor
    order: Tensor


class Stack(NamedTuple):
    """What an engine runs: the cell, the weights of every layer and direction (index
    layer * D + direction), and the layer options that are not the input's; `streaming` for a
    step() call, whose cell state the next step carries on (`precision_for`)."""

    cell: Cell
    weights: list[LayerWeights]
    num_layers: int
    bidirectional: bool
    dropout: float
    training: bool
    bias: bool
    regularisation: Regularisation = Regularisation()
    streaming: bool = False

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def noise(self, inputs: Tensor, hidden_size: int, output_size: int) -> LayerNoise | None:
        """Draw the masks of one layer and direction for `inputs` (T, B, ·), or None when no
        regulariser acts on the recurrence."""
        regularisation = self.regularisation
        acting = regularisation.acting(self.training)
        if not acting & {"recurrent_dropout", "zoneout"}:
            return None
        steps, batch = inputs.shape[:2]
        recurrent_mask = None
        if "recurrent_dropout" in acting:
            recurrent_mask = dropout_mask((batch, output_size), regularisation.recurrent_dropout, inputs)
        keep = {}
        for name, size, z in (("hidden", output_size, regularisation.zoneout_hidden),
                              ("cell", hidden_size, regularisation.zoneout_cell)):
            if not z:
                keep[name] = None
            elif self.training:  # u < z, u ~ U[0, 1), in place: twice as fast as torch.bernoulli on CPU
                keep[name] = torch.rand(steps, batch, size, dtype=inputs.dtype, device=inputs.device).lt_(z)
            else:
                keep[name] = inputs.new_tensor(z)
        return LayerNoise(recurrent_mask, keep["hidden"], keep["cell"])


def dropout_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """0 with probability p, else 1/(1-p) (inverted dropout: the expectation is 1). Drawn as
    uniform numbers below 1 − p, as zoneout's are: torch.compile draws those as eager does
    (with Inductor's fallback_random), and torch.bernoulli otherwise."""
    return torch.rand(shape, dtype=like.dtype, device=like.device).lt_(1 - p).div_(1 - p)


def own_cell(cell: Cell, engine: str) -> str | None:
    """Why `engine`'s kernels, chosen by a cell's name, do not run `cell` where it is one of the
    user's under the name of one of lstmkit's (a subclass with a `step` of its own), which they
    would have run as lstmkit's, silently; None for any other cell."""
    if cell.name not in CELLS or is_builtin(cell):
        return None
    return (f"cell {type(cell).__name__} is one of your own, under the name {cell.name!r} of lstmkit's; the "
            f"{engine} kernels run lstmkit's cells alone, and the reference engine runs a cell's own step")


class Engine:
    """An engine: `run` a stack over time-major data (T, B, I), packed as `packing` says, or
    None when every sequence has all T steps."""

    name: ClassVar[str]
    exposes_gates: ClassVar[bool] = True  # whether `run` can return the gate activations
    regularisers: ClassVar[frozenset[str]] = REGULARISERS  # the Regularisation options it runs
    runs_packed_rows: ClassVar[bool] = False  # whether `run_packed` runs a PackedSequence as it is

    def unavailable(self) -> str | None:
        """Why this engine cannot run at all here (a missing package), or None."""
        return None

    def unsupported(self, cell: Cell, device: torch.device | None, cell_steps: bool = False) -> str | None:
        """Why this engine cannot run `cell` (on `device`, when given), or None when it can;
        `cell_steps`: the call is one torch's CPU kernels run as cell steps, not as oneDNN's
        LSTM (packed input, or a projection: `lstm_cell_steps`)."""
        return None

    def run(
        self, stack: Stack, data: Tensor, packing: Packing | None, h0: Tensor, c0: Tensor | None, return_gates: bool
    ) -> StackRun:
        raise NotImplementedError

    def run_packed(self, stack: Stack, rows: Tensor, batch_sizes: Tensor, sorted_indices: Tensor | None,
                   unsorted_indices: Tensor | None, h0: Tensor, c0: Tensor | None) -> StackRun:
        """The stack over the rows of a PackedSequence (the fields it is given as: under
        torch.compile a PackedSequence does not cross into an eager call whole; h0 and c0 in the
        batch's order), unpadded: output as the rows of a PackedSequence packed alike. For an
        engine whose `runs_packed_rows`; the others are given the input padded, to `run`."""
        raise NotImplementedError


class LayerEngine(Engine):
    """An engine that runs one layer and direction at a time."""

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
        """Run `cell` over `inputs` (T, B, I) from (h0, c0) in `precision`: outputs and final
        states in `precision.output`, traced activations in `precision.state`; with `noise`,
        the recurrent dropout and zoneout it holds."""
        raise NotImplementedError

    def run(
        self, stack: Stack, data: Tensor, packing: Packing | None, h0: Tensor, c0: Tensor | None, return_gates: bool
    ) -> StackRun:
        """Every layer and direction in turn; dropout between layers in training, and the
        stack's regularisers (input dropout here, the recurrent ones in `run_layer`)."""
        lengths = None if packing is None else packing.lengths
        projected = stack.weights[0].weight_hr is not None
        precision = precision_for(
            stack.cell, stack.weights[0].weight_ih.dtype, data.device, lstm_cell_steps(lengths, projected, data),
            (h0 if c0 is None else c0).dtype, projected, stack.streaming,
        )
        input_dropout = stack.regularisation.input_dropout if stack.training else 0.0
        hidden_size = h0.shape[-1] if c0 is None else c0.shape[-1]
        layer_input = data
        final_h, final_c, trace = [], [], []
        for layer in range(stack.num_layers):
            direction_outputs = []
            for direction in range(stack.num_directions):
                index = layer * stack.num_directions + direction
                flip = (lambda sequence: reverse(sequence, lengths)) if direction else (lambda sequence: sequence)
                inputs = flip(layer_input)
                if input_dropout:
                    inputs = inputs * dropout_mask(inputs.shape[1:], input_dropout, inputs)
                noise = stack.noise(inputs, hidden_size, h0.shape[-1])
                run = self.run_layer(
                    stack.cell, stack.weights[index], inputs, h0[index],
                    None if c0 is None else c0[index], lengths, return_gates, precision, noise,
                )
                direction_outputs.append(flip(run.output))
                final_h.append(run.h)
                final_c.append(run.c)
                if return_gates:
                    cells = None if run.cell_states is None else flip(run.cell_states)
                    trace.append((tuple(flip(gate) for gate in run.gates), cells))
            layer_input = join(direction_outputs, torch.cat, -1) if stack.bidirectional else direction_outputs[0]
            if stack.dropout and stack.training and layer < stack.num_layers - 1:
                layer_input = inter_layer_dropout(layer_input, stack.dropout, packing)
        c_n = None if c0 is None else join(final_c, torch.stack, 0)
        return StackRun(layer_input, join(final_h, torch.stack, 0), c_n, trace if return_gates else None)


def inter_layer_dropout(values: Tensor, p: float, packing: Packing | None) -> Tensor:
    """Dropout of one layer's output `values` (T, B, F) before the next layer, drawn as
    torch.nn draws it. On the CPU, packed input's over its packed values alone, one row per
    sequence and step in `packing.order`, as torch.nn's kernels draw it on a PackedSequence:
    the same masks, and the same random stream after them. Elsewhere over the padded values
    (the steps past a length are 0 and stay 0): on CUDA torch.nn's cuDNN kernel draws masks of
    its own, which no other kernel reproduces, and data-dependent indexing would stop the
    fused engine's graph capture."""
    if packing is None or values.device.type != "cpu" or values.shape[1] == 0:
        return F.dropout(values, p, training=True)
    packed_lengths = packing.lengths.index_select(0, packing.order)
    running = torch.arange(values.shape[0]).unsqueeze(1) < packed_lengths  # (T, B), sequences in packed order
    steps, rows = running.nonzero(as_tuple=True)  # row-major: the packed order of the values
    sequences = packing.order.index_select(0, rows)
    dropped = F.dropout(values[steps, sequences], p, training=True)
    return values.new_zeros(values.shape).index_put((steps, sequences), dropped)


def join(parts: list[Tensor], how, dim: int) -> Tensor:
    """torch.cat or torch.stack of a layer's results, already in their output dtype, with
    autocast off: under CPU autocast in one half dtype, torch cannot join tensors of the other
    (half-precision parameters: "Unexpected floating ScalarType in at::autocast::prioritize")."""
    with autocast(parts[0].device.type, enabled=False):
        return how(parts, dim)


def reverse(sequence: Tensor, lengths: Tensor | None) -> Tensor:
    """`sequence` (T, B, ...) with each sequence reversed within its own length."""
    if lengths is None:
        return sequence.flip(0)
    steps = torch.arange(sequence.shape[0], device=sequence.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.view(*index.shape, *[1] * (sequence.dim() - 2)).expand_as(sequence)
    return sequence.gather(0, index)
