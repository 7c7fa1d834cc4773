"""Cells: the math of one time step. `make_cell("lstm", forget_gate=False)` builds one by name.

The classes here are named `...Step` (`LSTMStep`, `GRUStep`, ...): frozen dataclasses holding a
cell's options and equations, what `lstmkit.Recurrent(cell=...)` and the engines take. The
`...Cell` names (`lstmkit.LSTMCell`, ...) are the torch.nn-style modules that run one step
with parameters, in `lstmkit.nn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from lstmkit.cells.base import Cell, ExtraParameter, LayerWeights
from lstmkit.cells.gru import GRUStep
from lstmkit.cells.layernorm import LayerNormLSTMStep
from lstmkit.cells.lstm import CIFGLSTMStep, LSTMStep, PeepholeLSTMStep
from lstmkit.cells.rnn import RNNStep
from lstmkit.keywords import unknown_names

CELLS: dict[str, type[Cell]] = {
    cell.name: cell
    for cell in (RNNStep, LSTMStep, GRUStep, PeepholeLSTMStep, CIFGLSTMStep, LayerNormLSTMStep)
}


def make_cell(name: str, **options: object) -> Cell:
    """The cell registered as `name`, with its options checked by name and value."""
    check_cell_options(name, options)
    return CELLS[name](**options)


def check_cell_options(name: str, options: dict[str, object], also_known: Sequence[str] = ()) -> None:
    """Refuse an unknown cell `name`, or an option the cell does not take, with the option
    likely meant among the cell's and `also_known` (the keywords of the module it was given to)."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(sorted(CELLS))}")
    known = [field.name for field in fields(CELLS[name])]
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "no options"
        named = unknown_names(unknown, [*known, *also_known])
        raise TypeError(f"cell {name!r} got unknown option(s) {named}; it accepts {accepted}")


__all__ = [
    "CELLS",
    "CIFGLSTMStep",
    "Cell",
    "ExtraParameter",
    "GRUStep",
    "LSTMStep",
    "LayerNormLSTMStep",
    "LayerWeights",
    "PeepholeLSTMStep",
    "RNNStep",
    "check_cell_options",
    "make_cell",
]
