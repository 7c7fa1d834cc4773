"""Cells: the math of one time step. `make_cell("lstm", forget_gate=False)` builds one by name."""

from __future__ import annotations

from dataclasses import fields

from lstmkit.cells.base import Cell, ExtraParameter, LayerWeights
from lstmkit.cells.gru import GRUCell
from lstmkit.cells.layernorm import LayerNormLSTMCell
from lstmkit.cells.lstm import CIFGLSTMCell, LSTMCell, PeepholeLSTMCell
from lstmkit.cells.rnn import RNNCell

CELLS: dict[str, type[Cell]] = {
    cell.name: cell
    for cell in (RNNCell, LSTMCell, GRUCell, PeepholeLSTMCell, CIFGLSTMCell, LayerNormLSTMCell)
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
    "CIFGLSTMCell",
    "Cell",
    "ExtraParameter",
    "GRUCell",
    "LSTMCell",
    "LayerNormLSTMCell",
    "LayerWeights",
    "PeepholeLSTMCell",
    "RNNCell",
    "make_cell",
]
