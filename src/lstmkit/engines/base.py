"""What an engine returns for one layer and direction."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


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
