"""The regularisers and initialisations of the LSTM literature, as layer options: checked
when a layer is built, with the value received in the message.

    recurrent_dropout  Gal & Ghahramani 2016: one mask on h_{t-1} per sequence
    input_dropout      the same on each layer's input
    zoneout            Krueger et al. 2017: units keep their previous value with probability z
    weight_dropout     Merity et al. 2017 (AWD-LSTM): DropConnect on weight_hh
    init="chrono"      Tallec & Ollivier 2018: b_f ~ log U[1, chrono_max − 1], b_i = −b_f
    init="orthogonal"  each gate's block of weight_hh orthogonal (Saxe et al. 2014)

The engines apply the masks (lstmkit.engines.base.Regularisation); here they are only checked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lstmkit.cells import Cell
from lstmkit.engines import Regularisation
from lstmkit.nn.parameters import gate_rows, set_gate_biases

INITS = ("chrono", "orthogonal")
REGULARISER_OPTIONS = ("recurrent_dropout", "input_dropout", "zoneout", "weight_dropout", "init", "chrono_max")
# Said where one of them is given to a cell module, which steps once and holds no sequence.
NO_CELL_MODULE_REGULARISERS = "a cell module takes no regulariser options; the layers take them"


def check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def regularisation(cell: Cell, recurrent_dropout: object, input_dropout: object, zoneout: object,
                   weight_dropout: object) -> Regularisation:
    """The checked options; zoneout is z (for c and h alike) or (z_c, z_h)."""
    if isinstance(zoneout, Sequence) and not isinstance(zoneout, str):
        if len(zoneout) != 2:
            raise ValueError(f"zoneout must be a probability z or a pair (z_c, z_h), got {zoneout!r}")
        zoneout_cell, zoneout_hidden = (check_probability("zoneout", z) for z in zoneout)
    else:
        zoneout_hidden = check_probability("zoneout", zoneout)
        zoneout_cell = zoneout_hidden if cell.has_cell_state else 0.0
    if zoneout_cell and not cell.has_cell_state:
        raise ValueError(f"zoneout of the cell state needs a cell with one; cell {cell.describe()} has only h "
                         f"(got zoneout={zoneout!r}; give z alone, or (0, z_h))")
    return Regularisation(check_probability("recurrent_dropout", recurrent_dropout),
                          check_probability("input_dropout", input_dropout), zoneout_cell, zoneout_hidden,
                          check_probability("weight_dropout", weight_dropout))


def check_init(cell: Cell, init: object, chrono_max: object, bias: bool, forget_bias: float | None) -> tuple[str, ...]:
    """The initialisations asked for (none, one of INITS, or a sequence of them), checked."""
    names = init_names(init)
    if "chrono" in names:
        if cell.forget_bias_block is None:
            raise ValueError(f"init='chrono' sets the forget gate's bias; cell {cell.describe()} has no forget gate")
        if not bias:
            raise ValueError("init='chrono' sets the gates' biases; the layer has none (bias=False)")
        if forget_bias is not None:
            raise ValueError(f"init='chrono' and forget_bias={forget_bias} both set the forget gate's bias; "
                             "give one of them")
        check_chrono_max_value(chrono_max)
    elif chrono_max is not None:
        raise ValueError(f"chrono_max goes with init='chrono', got chrono_max={chrono_max!r} with init={init!r}")
    return names


def init_names(init: object) -> tuple[str, ...]:
    """`init` as a tuple of names of INITS, each once; what any cell takes (a number is refused by
    name, not as "'int' object is not iterable")."""
    names = (() if init is None else (init,) if isinstance(init, str) else
             tuple(init) if isinstance(init, Iterable) else (init,))  # a list, or a NumPy array of names
    if any(name not in INITS for name in names):
        raise ValueError(f"init must be None, {' or '.join(repr(name) for name in INITS)}, or a sequence of them, "
                         f"got {init!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"init names each initialisation once, got {init!r}")
    return tuple(map(str, names))  # plain str: numpy's np.str_ would not load under weights_only=True


def plain_number(value: numbers.Real) -> int | float:
    """A number as a Python int or float (a numpy scalar, kept as given, would not load under
    torch.load's weights_only=True)."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def check_chrono_max_value(chrono_max: object) -> None:
    """Refuse a chrono_max that gives no range of forget biases: one at most 2, or not finite."""
    if (isinstance(chrono_max, bool) or not isinstance(chrono_max, numbers.Real) or not chrono_max > 2
            or not math.isfinite(chrono_max)):
        raise ValueError("init='chrono' needs chrono_max, the longest dependency expected in steps, a finite "
                         f"number above 2; got chrono_max={chrono_max!r}")


def chrono_biases(cell: Cell, hidden_size: int, chrono_max: float, bias_ih: Tensor | None,
                  bias_hh: Tensor | None) -> None:
    """b_f ~ log U[1, chrono_max − 1] and b_i = −b_f, through `set_gate_biases`: the forget
    gate then holds memories over time scales from 1 to chrono_max steps. A coupled cell
    (f = 1 − i) has the input gate alone: it gets −b_f. U is drawn in float32 at least, and in
    float64 where chrono_max passes float32's range (a float16 layer failed past 65504, whose
    biases, about 11, it holds)."""
    block, sign = cell.forget_bias_block
    held = bias_ih if bias_ih is not None else bias_hh
    dtype = torch.promote_types(held.dtype, torch.float32)
    dtype = dtype if chrono_max - 1 <= torch.finfo(dtype).max else torch.float64
    forget = torch.log(torch.empty(hidden_size, dtype=dtype, device=held.device).uniform_(1, chrono_max - 1))
    rows = [(gate_rows(cell, block, hidden_size), sign * forget)]
    if block == "f" and "i" in cell.weight_blocks:
        rows.append((gate_rows(cell, "i", hidden_size), -forget))
    set_gate_biases(rows, bias_ih, bias_hh)


def orthogonal_blocks(hidden_size: int, weight_hh: Tensor) -> None:
    """Each gate's (hidden_size, ·) block of weight_hh an orthogonal matrix, computed in float32
    at least (torch's QR takes no float16 or bfloat16)."""
    dtype = torch.promote_types(weight_hh.dtype, torch.float32)
    with torch.no_grad():
        for block in weight_hh.split(hidden_size):
            block.copy_(torch.nn.init.orthogonal_(torch.empty_like(block, dtype=dtype)))

