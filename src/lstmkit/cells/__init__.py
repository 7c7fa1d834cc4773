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

# The gate ablations of Greff et al. (2017), by their names there, lower-cased: the LSTM with one
# switch off, so that a command that takes cell names (`lstmkit task --cells lstm,nfg`) compares
# them. Greff et al. ablate an LSTM with peepholes, lstmkit's has none: each is their NP variant
# with that ablation as well.
ABLATIONS: dict[str, dict[str, bool]] = {
    "nig": {"input_gate": False},
    "nfg": {"forget_gate": False},
    "nog": {"output_gate": False},
    "niaf": {"input_activation": False},
    "noaf": {"output_activation": False},
}
CELL_NAMES: tuple[str, ...] = (*CELLS, *ABLATIONS)  # every name a cell can be built from


def saved_cell_name(cell: object, owner: str) -> str:
    """`cell`, the name a model's config saves in its checkpoint (`owner`: the config's class),
    checked to be one: a Cell object there ran, then was saved as its options alone, a checkpoint
    no lstmkit could load."""
    if not isinstance(cell, str):
        raise TypeError(f"{owner}.cell must be the name of one of lstmkit's cells ({', '.join(CELL_NAMES)}), which "
                        f"its checkpoint saves, got {cell!r}; a cell object, of your own or lstmkit's, goes to "
                        "lstmkit.Recurrent in a model of your own, saved with torch.save")
    return cell


def is_builtin(cell: Cell) -> bool:
    """Whether `cell` is one of lstmkit's (its class the one registered under its name): the
    engines' kernels, chosen by name, run those alone. A cell of one's own, a subclass of one of
    lstmkit's with a `step` of its own included, runs on the reference engine, which runs its
    `step` as written."""
    return type(cell) is CELLS.get(getattr(cell, "name", None))


def named_cell(name: str) -> tuple[str, dict[str, bool]]:
    """The registered cell a name stands for, and the options it fixes (an ablation's: the LSTM
    with one switch off; none for a registered cell)."""
    return ("lstm", dict(ABLATIONS[name])) if name in ABLATIONS else (name, {})


def make_cell(name: str, **options: object) -> Cell:
    """The cell registered as `name` (or the ablation of that name), with its options checked
    by name and value."""
    check_cell_options(name, options)
    registered, fixed = named_cell(name)
    return CELLS[registered](**fixed, **options)


def check_cell_options(name: str, options: dict[str, object], also_known: Sequence[str] = ()) -> None:
    """Refuse an unknown cell `name`, or an option the cell does not take, with the option
    likely meant among the cell's and `also_known` (the keywords of the module it was given to)."""
    if name not in CELL_NAMES:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(CELL_NAMES)}")
    registered, fixed = named_cell(name)
    if set(options) & set(fixed):
        ablation = ", ".join(f"{option}={value}" for option, value in fixed.items())
        raise TypeError(f"cell {name!r} is lstm with {ablation} already; give {', '.join(sorted(options))} to "
                        "cell 'lstm' instead")
    known = [field.name for field in fields(CELLS[registered]) if field.name not in fixed]
    unknown = sorted(set(options) - set(known))
    if unknown:
        accepted = ", ".join(known) if known else "no options"
        owners = {}  # the other cells' options (the LSTM's gate switches, say), by the cells that take them
        for other, cell_type in CELLS.items():
            for field in fields(cell_type):
                if field.name not in (*known, *fixed):
                    owners.setdefault(field.name, []).append(repr(other))
        elsewhere = {option: f"an option of cell {' and '.join(cells)}" for option, cells in owners.items()}
        named = unknown_names(unknown, [*known, *also_known], elsewhere)
        raise TypeError(f"cell {name!r} got unknown option(s) {named}; it accepts {accepted}")


__all__ = [
    "ABLATIONS",
    "CELLS",
    "CELL_NAMES",
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
    "is_builtin",
    "named_cell",
    "saved_cell_name",
]
