"""What every cell is: the math of one time step, and what it needs to run.

A cell knows nothing about time, layers or directions. An engine runs it over a sequence:

    x_proj = cell.project_input(x, weights)          # all T steps at once
    for t:
        h_proj = cell.project_hidden(h, weights)     # one recurrent matrix product
        h, c, gates = cell.step(x_proj[t], h_proj, h, c, weights)

`h` returned by `step` is the cell output before the optional projection `weight_hr`, which
the engine applies (projection is a layer option, not cell math). How an engine runs the
step fast (in place, in one kernel, backward by hand) is the engine's business: see
`lstmkit.engines`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields, is_dataclass
from typing import ClassVar, NamedTuple

import torch.nn.functional as F
from torch import Tensor

from lstmkit.received import received


class LayerWeights(NamedTuple):
    """The parameters of one layer and direction, as the cell and engine read them.

    `extra` maps a cell's extra parameter names (without the `_l{k}` suffix) to tensors;
    biases are None when the layer was built with `bias=False`, `weight_hr` when
    `proj_size=0`.
    """

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None
    weight_hr: Tensor | None
    extra: dict[str, Tensor]

    def tensors(self) -> tuple[Tensor, ...]:
        """Every weight the layer has (not the None of an absent one)."""
        return tuple(tensor for tensor in (*self[:5], *self.extra.values()) if tensor is not None)


@dataclass(frozen=True)
class ExtraParameter:
    """A parameter a cell adds to the torch.nn set.

    `size` is "hidden" (H) or "gates" (G*H); `init` is "uniform" (torch's U(-1/sqrt(H),
    1/sqrt(H)), like every torch.nn RNN weight), "ones" or "zeros"; `is_bias` parameters exist
    only when the layer has `bias=True`.
    """

    name: str
    size: str
    init: str
    is_bias: bool = False


EXTRA_SIZES, EXTRA_INITS = ("hidden", "gates"), ("uniform", "ones", "zeros")  # ExtraParameter's


class Cell:
    """Base of the cell definitions; subclasses are frozen dataclasses whose fields are options.

    Class attributes every cell sets (weight_blocks and trace_names may be properties of its
    options instead, as the LSTM's gate switches make them):
        name: the registry name (`Recurrent(cell=name)`).
        weight_blocks: the row blocks of `weight_ih`/`weight_hh`, in order (G = their count).
        has_cell_state: whether the state carries `c` besides `h` (the LSTM family).
        supports_projection: whether `proj_size` applies (the LSTM family).
        trace_names: the names of the activations `step` returns, for `return_gates`.
        extra_parameters: what the cell adds to `weight_ih, weight_hh, bias_ih, bias_hh`.
    """

    name: ClassVar[str]
    weight_blocks: ClassVar[tuple[str, ...]]
    has_cell_state: ClassVar[bool] = True
    supports_projection: ClassVar[bool] = True
    trace_names: ClassVar[tuple[str, ...]] = ()
    extra_parameters: ClassVar[tuple[ExtraParameter, ...]] = ()

    @property
    def num_gates(self) -> int:
        """G: how many blocks of H rows the input and recurrent weights stack."""
        return len(self.weight_blocks)

    @property
    def forget_bias_block(self) -> tuple[str, float] | None:
        """Where `forget_bias` goes: (block, sign) so that f = sigmoid(forget_bias) at zero
        input, or None for a cell without a forget gate."""
        return None

    def check_hidden_size(self, hidden_size: int) -> None:
        """Reject a hidden size the cell's math cannot use (checked when a layer is built)."""

    def initial_state(
        self, batch_size: int, hidden_size: int, output_size: int, like: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Zeros: `h` of size `output_size` (proj_size or H), `c` of size H or None."""
        h = like.new_zeros(batch_size, output_size)
        c = like.new_zeros(batch_size, hidden_size) if self.has_cell_state else None
        return h, c

    def project_input(self, x: Tensor, weights: LayerWeights) -> Tensor:
        """W_ih x + b_ih, for any number of leading dimensions (all T steps at once)."""
        return F.linear(x, weights.weight_ih, weights.bias_ih)

    def project_hidden(self, h: Tensor, weights: LayerWeights) -> Tensor:
        """W_hh h + b_hh."""
        return F.linear(h, weights.weight_hh, weights.bias_hh)

    def step(
        self, x_proj: Tensor, h_proj: Tensor, h: Tensor, c: Tensor | None, weights: LayerWeights
    ) -> tuple[Tensor, Tensor | None, tuple[Tensor, ...]]:
        """One point-wise step: returns (h', c', activations named by `trace_names`)."""
        raise NotImplementedError

    def named_gates(self, activations: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """The activations of `step` by name, for `return_gates`."""
        return dict(zip(self.trace_names, activations, strict=True))

    def describe(self) -> str:
        """The cell with its non-default options, as shown in a layer's repr."""
        options = ", ".join(f"{key}={value!r}" for key, value in self.options().items())
        return f"{self.name}({options})" if options else self.name

    def options(self) -> dict[str, object]:
        """The options (dataclass fields of the subclass) that differ from their defaults."""
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if getattr(self, field.name) != field.default
        }


def check_bool_options(cell: Cell) -> None:
    """Reject a non-bool value for an on/off option, naming the option and the value received."""
    for field in fields(cell):
        value = getattr(cell, field.name)
        if isinstance(field.default, bool) and not isinstance(value, bool):
            raise TypeError(
                f"cell {cell.name!r} option {field.name} must be a bool, "
                f"got {received(value)}"
            )


def check_own_cell(cell: Cell) -> None:
    """Refuse, when a layer or cell module is built, a cell of one's own (not lstmkit's) that
    lacks what the layers read of it, naming what and the value found: it failed deep inside a
    call (`'NoName' object has no attribute 'name'`, `KeyError: 'hiden'`, `tuple.index(x): x not
    in tuple`)."""
    kind = type(cell).__name__
    if not is_dataclass(cell):
        raise TypeError(f"cell {kind} must be a dataclass (@dataclass(frozen=True)), as lstmkit's cells are: its "
                        "fields are its options")
    for attribute in ("name", "weight_blocks"):
        if not hasattr(type(cell), attribute):
            raise TypeError(f"cell {kind} must set {attribute} (see lstmkit.cells.Cell)")
    name, blocks, names = cell.name, cell.weight_blocks, cell.trace_names
    if not isinstance(name, str) or not name:
        raise TypeError(f"cell {kind} must set name, a str (the name layers show it by), got {name!r}")
    if not (isinstance(blocks, (tuple, list)) and blocks and all(isinstance(block, str) for block in blocks)
            and len(set(blocks)) == len(blocks)):
        raise TypeError(f"cell {kind} must set weight_blocks, distinct names, one per block of H rows of its weights, "
                        f"got {blocks!r}")
    if not (isinstance(names, (tuple, list)) and all(isinstance(trace, str) for trace in names)
            and len(set(names)) == len(names)):  # one repeated lost an activation from the gates traced
        raise TypeError(f"cell {kind}: trace_names must be the distinct names of the activations its step returns, "
                        f"got {names!r}")
    block = cell.forget_bias_block
    if block is not None and not (isinstance(block, (tuple, list)) and len(block) == 2 and block[0] in blocks
                                  and isinstance(block[1], numbers.Real) and not isinstance(block[1], bool)):
        raise ValueError(f"cell {kind}: forget_bias_block must be None or (block, sign) with a block of its "
                         f"weight_blocks {blocks} and a number, got {block!r}")
    if not isinstance(cell.extra_parameters, (tuple, list)):
        raise TypeError(f"cell {kind}: extra_parameters must be a tuple of ExtraParameter, got "
                        f"{cell.extra_parameters!r}")
    for extra in cell.extra_parameters:
        if not isinstance(extra, ExtraParameter) or extra.size not in EXTRA_SIZES or extra.init not in EXTRA_INITS \
                or not isinstance(extra.name, str) or not extra.name.isidentifier():
            raise ValueError(f"cell {kind}: each of extra_parameters must be an ExtraParameter named by an identifier, "
                             f"whose size is one of {', '.join(EXTRA_SIZES)} and init one of "
                             f"{', '.join(EXTRA_INITS)}, got {extra!r}")
    names = [extra.name for extra in cell.extra_parameters]
    own_weights = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    clashing = sorted({name for name in names if name in own_weights or names.count(name) > 1}, key=str)
    if clashing:  # one parameter replaced another without a word, and the call failed far from here
        raise ValueError(f"cell {kind}: each of extra_parameters needs a name of its own, given once and not one of "
                         f"the layer's weights ({', '.join(own_weights)}), got {', '.join(map(repr, clashing))}")
    if type(cell).step is Cell.step:
        raise TypeError(f"cell {kind} must define step(x_proj, h_proj, h, c, weights), its math (see "
                        "lstmkit.cells.Cell.step)")


def check_step_results(cell: Cell, result: object, traced: bool, expected: tuple[int, int]) -> None:
    """Refuse what a first step of a cell of one's own returned where the layers would misread it:
    not a tuple (h', c', activations) (a bare unpacking error, or a tensor unpacked by rows),
    an h' or c' not of the `expected` shape (batch, hidden_size) (an output of another width came
    back from a one-step call, and a longer one failed in a product), a c' the cell's
    `has_cell_state` does not declare, or, where they are `traced`, other activations than its
    `trace_names` name (they failed at zip())."""
    kind = type(cell).__name__
    if not (isinstance(result, (tuple, list)) and len(result) == 3):  # a list unpacks as well
        got = f"a {type(result).__name__} of {len(result)}" if isinstance(result, (tuple, list)) else \
            type(result).__name__
        raise ValueError(f"cell {kind}'s step must return (h', c', activations) (c' None without a cell state), got "
                         f"{got}")
    h, c, activations = result
    if traced and not isinstance(activations, (tuple, list)):
        raise ValueError(f"cell {kind}'s step must return its activations as a tuple (one per name of its "
                         f"trace_names), got {type(activations).__name__}")
    activations = activations if traced else None
    if tuple(h.shape) != expected:
        raise ValueError(f"cell {kind}'s step returned h' of shape {tuple(h.shape)}; expected {expected} (batch, "
                         "hidden_size)")
    if (c is None) == cell.has_cell_state:
        declared = "declares a cell state (has_cell_state = True, Cell's default)" if cell.has_cell_state else \
            "declares no cell state (has_cell_state = False)"
        raise ValueError(f"cell {kind} {declared}, but its step returned c' = {'None' if c is None else 'a tensor'}")
    if c is not None and tuple(c.shape) != expected:
        raise ValueError(f"cell {kind}'s step returned c' of shape {tuple(c.shape)}; expected {expected} (batch, "
                         "hidden_size)")
    if activations is not None and len(activations) != len(cell.trace_names):
        raise ValueError(f"cell {kind}'s step returned {len(activations)} activation(s); its trace_names name "
                         f"{len(cell.trace_names)}: {', '.join(cell.trace_names) or 'none'}")
