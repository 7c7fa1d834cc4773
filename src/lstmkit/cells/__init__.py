"""Cells: the math of one time step. `make_cell("lstm", forget_gate=False)` builds one by name.

The classes here are named `...Step` (`LSTMStep`, `GRUStep`, ...): frozen dataclasses holding a
cell's options and equations, what `lstmkit.Recurrent(cell=...)` and the engines take. The
`...Cell` names (`lstmkit.LSTMCell`, ...) are the torch.nn-style modules that run one step
with parameters, in `lstmkit.nn`.
"""

from __future__ import annotations

from dataclasses import fields

from lstmkit.cells.base import Cell, ExtraParameter, LayerWeights
from lstmkit.cells.gru import GRUStep
from lstmkit.cells.layernorm import LayerNormLSTMStep
from lstmkit.cells.lstm import CIFGLSTMStep, LSTMStep, PeepholeLSTMStep
from lstmkit.cells.rnn import RNNStep

CELLS: dict[str, type[Cell]] = {
    cell.name: cell
    for cell in (RNNStep, LSTMStep, GRUStep, PeepholeLSTMStep, CIFGLSTMStep, LayerNormLSTMStep)
}


def make_cell(name: str, **options: object) -> Cell:
    """The cell registered as `name`, with its options checked by name and value."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(sorted(CELLS))}")
    cell_type = CELLS[name]
    known = [field.name for field in fields(cell_type)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "no options"
        raise TypeError(
            f"cell {name!r} got unknown option(s) {', '.join(unknown)}; it accepts {accepted}"
        )
    return cell_type(**options)


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
    "make_cell",
]
