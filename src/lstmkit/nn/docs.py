"""Docstring templates of the layers and cell modules, filled from the cells so docs follow code."""

from __future__ import annotations

import inspect

import torch

from lstmkit.cells import Cell

TEMPLATE = """{summary}

{equations}

Args:
{leading_args}    input_size: features of the input x.
    hidden_size: features of the hidden state h{and_cell_state}.
    num_layers: recurrent layers stacked; layer k > 0 reads the output of layer k - 1.
        Default: 1
    bias: if False, the layer has no bias_ih and bias_hh (nor any other additive shift).
        Default: True
    batch_first: if True, input and output tensors are (B, T, feature) instead of
        (T, B, feature); {final_states} not affected. Default: False
    dropout: probability of zeroing each output of every layer but the last, in training
        mode only. Default: 0.0
    bidirectional: if True, each layer also runs every sequence backwards and concatenates
        the two outputs. Default: False
{projection}    device, dtype: where and in which type the parameters are created. Default: torch's
{forget_bias}{regularisers}    engine (keyword): how the cells run over time: "native" (torch's own kernels,
        oneDNN/cuDNN; plain lstm, gru and rnn only), "fused" (one torch.library custom op per layer with a
        hand-derived backward; every cell), "triton" (each step's point-wise work in one
        Triton kernel, forward and backward; every cell, on CUDA), "reference" (a plain loop under
        autograd, the oracle) or "auto" (per cell and device, the engine that measures
        fastest: see BENCHMARKS.md). Every engine runs under torch.autocast. Default: "auto"
{trailing_args}
Inputs: input, hx
    input: (T, B, input_size), (B, T, input_size) with batch_first, (T, input_size)
        unbatched, or a PackedSequence.
    hx: the initial state, zeros if None: {state_in}
        of shape (num_layers * num_directions, B, ·), or without the B dimension for
        unbatched input. Default: None
    lengths (keyword): padded input's valid steps per sequence, (B,) integers in [1, T];
        outputs past a sequence's length are zero and its final state is taken at its
        last valid step, the same numbers as packing it. Default: None
    return_gates (keyword): also return a `GateTrace` of every step's activations (with
        engine="auto", a call the native kernels would run runs on the fused engine; a layer
        built with engine="native" refuses it). Default: False

Outputs: output, {state_out}[, gates]
    output: (T, B, D * H_out), (B, T, D * H_out) with batch_first, (T, D * H_out)
        unbatched, or a PackedSequence for packed input: h_t of the last layer, both
        directions concatenated (D = 2 if bidirectional else 1, H_out = {h_out}).
    h_n: (num_layers * D, B, H_out), the final h of every layer and direction.
{c_n}    gates: with return_gates=True, a `GateTrace`.

Attributes:
    weight_ih_l[k]: (G * hidden_size, input_size) for k = 0, else (G * hidden_size,
        D * H_out): the input weights {blocks} stacked.
    weight_hh_l[k]: (G * hidden_size, H_out), the recurrent weights in the same order.
    bias_ih_l[k], bias_hh_l[k]: (G * hidden_size,), with bias=True.
{extra_attributes}    Every parameter is initialised from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) as in
    torch.nn, in torch.nn's order, unless said otherwise above. The backward direction's
    parameters carry the suffix `_reverse`.

Example::

{example}
"""

ANY_CELL_EQUATIONS = "Each cell's step is given in its class in `lstmkit.cells`."
ANY_CELL_ARG = (
    "cell: the cell's name (rnn, lstm, gru, peephole, cifg, layernorm, or an ablation:\n"
    "    nig, nfg, nog, niaf, noaf) or a `lstmkit.cells.Cell` instance (one of your own\n"
    "    runs on the reference engine)."
)
CELL_OPTIONS_ARG = (
    "**cell_options: options of the named cell, e.g. `nonlinearity` for rnn,\n"
    "    `forget_gate` for lstm."
)
LSTM_OPTIONS_ARGS = (
    "input_gate, forget_gate, output_gate (keyword): if False, that gate is removed\n"
    "    (≡ 1) with its weight rows. Default: True\n"
    "input_activation, output_activation (keyword): if False, g and h' skip their tanh.\n"
    "    Default: True"
)

PROJECTION = """    proj_size: if > 0, the cell's output (h' of its step: o ⊙ tanh(c') for the plain LSTM)
        is projected, h = W_hr h', to this size (LSTM family only); must be smaller than
        hidden_size. Default: 0
"""

NO_PROJECTION = """    proj_size: 0 only: the slot torch.nn's GRU and RNN keep for it among their positional
        arguments, so that those mean the same here; any other value is refused. Default: 0
"""

REGULARISERS = """    recurrent_dropout (keyword): in training, h_{t-1} enters the recurrent product through a
        dropout mask drawn once per sequence, layer and direction and shared by every step
        (Gal & Ghahramani 2016). Default: 0.0
    input_dropout (keyword): the same on each layer's input. Default: 0.0
    zoneout (keyword): z, or (z_c, z_h): in training each unit keeps its previous value with
        probability z at each step; in evaluation the expectation z·old + (1 − z)·new
        (Krueger et al. 2017). Default: 0.0
    weight_dropout (keyword): DropConnect on weight_hh, one mask per call, in training
        (Merity et al. 2017). Default: 0.0
"""

INIT_WITH_CHRONO = """    init (keyword): "orthogonal" (each gate's block of weight_hh orthogonal), "chrono"
        (Tallec & Ollivier 2018: b_f ~ log U[1, chrono_max − 1], b_i = −b_f; with
        chrono_max, the longest dependency expected, in steps), or both in a list.
        Default: None, torch.nn's initialisation
"""

INIT_WITHOUT_CHRONO = """    init (keyword): "orthogonal" (each gate's block of weight_hh orthogonal); "chrono",
        which sets a forget gate's bias, is for cells that have one. Default: None,
        torch.nn's initialisation
"""

FORGET_BIAS = """    forget_bias (keyword): if set, the forget gate starts at σ(forget_bias) at zero
        input: its bias rows of bias_ih to this value, bias_hh's to 0 (CIFG, whose forget gate
        is 1 − i: the input gate's rows to its negative); 1.0 is the recommendation of
        Jozefowicz et al. (2015). Default: None, torch.nn's initialisation
"""


def layer_docstring(
    summary: str,
    equations: str,
    example: str,
    cell: Cell | None = None,
    leading_args: str = "",
    trailing_args: str = "",
) -> str:
    """The docstring of a layer class; `cell` fills in its gates, state and parameters."""
    has_cell_state = cell is None or cell.has_cell_state
    projects = cell is None or cell.supports_projection
    forgets = cell is None or cell.forget_bias_block is not None
    projection = "    weight_hr_l[k]: (proj_size, hidden_size), with proj_size > 0.\n" if projects else ""
    return TEMPLATE.format(
        summary=summary,
        equations=equations,
        leading_args=indent(leading_args),
        projection=PROJECTION if projects else NO_PROJECTION,
        forget_bias=FORGET_BIAS if forgets else "",
        regularisers=REGULARISERS + (INIT_WITH_CHRONO if forgets else INIT_WITHOUT_CHRONO),
        trailing_args=indent(trailing_args),
        and_cell_state=" (and of the cell state c)" if has_cell_state else "",
        final_states="h_n and c_n are" if has_cell_state else "h_n is",
        state_in=state_words(cell, "a tuple (h_0, c_0)", "a tensor h_0"),
        state_out=state_words(cell, "(h_n, c_n)", "h_n"),
        h_out="proj_size if > 0 else hidden_size" if projects else "hidden_size",
        c_n="    c_n: (num_layers * D, B, hidden_size), the final cell states"
        + (" (the LSTM family's)" if cell is None else "") + ".\n" if has_cell_state else "",
        blocks=block_names(cell),
        extra_attributes=projection + extra_attributes(cell, "_l[k]"),
        example=indent(example, "    "),
    )


def state_words(cell: Cell | None, with_cell_state: str, without: str) -> str:
    """How a docstring names the state of `cell`: `with_cell_state` or `without`, or for any
    cell (None) both, with the cells each is for."""
    if cell is None:
        return f"{with_cell_state} ({without} for gru and rnn)"
    return with_cell_state if cell.has_cell_state else without


def block_names(cell: Cell | None) -> str:
    """The weight blocks of `cell`, as the Attributes section names them."""
    if cell is None:
        return "of the cell's G blocks"
    removable = "; a gate its switch removes has none" if cell.name == "lstm" else ""
    return "of each gate (" + ", ".join(f"W_i{block}" for block in cell.weight_blocks) + f"{removable})"


def extra_attributes(cell: Cell | None, suffix: str) -> str:
    """The Attributes lines of `cell`'s extra parameters, their names ending in `suffix`."""
    lines = ""
    for parameter in () if cell is None else cell.extra_parameters:
        size = "hidden_size" if parameter.size == "hidden" else "G * hidden_size"
        init = {"uniform": "", "ones": ", initialised to 1", "zeros": ", initialised to 0"}[parameter.init]
        condition = ", with bias=True" if parameter.is_bias else ""
        lines += f"    {parameter.name}{suffix}: ({size},){init}{condition}.\n"
    return lines


def step_equations(cell: Cell) -> str:
    """The equations of a cell, as its `step` docstring gives them."""
    return inspect.cleandoc(type(cell).step.__doc__)


def indent(text: str, prefix: str = "    ") -> str:
    """Indent each line of `text`, ending with a newline if there is any text."""
    return "".join(prefix + line + "\n" for line in text.splitlines())


CELL_TEMPLATE = """{summary}

{equations}

Args:
{leading_args}    input_size: features of the input x.
    hidden_size: features of the hidden state h{and_cell_state}.
    bias: if False, the cell has no bias_ih and bias_hh (nor any other additive shift).
        Default: True
{middle_args}    device, dtype: where and in which type the parameters are created. Default: torch's
{forget_bias}    engine (keyword): how the step runs: "native" (torch's own cell kernels, exactly
        torch.nn's cells; plain lstm, gru and rnn only), "fused" (the fused engine's
        point-wise kernels, one autograd.Function per step with a hand-derived backward;
        every cell), "triton" (the same step with the Triton engine's kernels, on CUDA; every
        cell), "reference" (the cell's step under autograd) or "auto" (native where it runs
        and return_gates is off; otherwise triton on CUDA where triton is installed, fused
        elsewhere). Default: "auto"
{trailing_args}
Inputs: input, hx
    input: (B, input_size), or (input_size,) unbatched.
    hx: the state, zeros if None: {state_in} of shape (B, hidden_size), or (hidden_size,)
        unbatched. Default: None
    return_gates (keyword): also return the step's activations by name, each shaped as h.
        Default: False

Outputs: {state_out}[, gates]
{outputs}    gates: with return_gates=True, a dict {gate_names}.

Attributes:
    weight_ih: (G * hidden_size, input_size), the input weights {blocks} stacked.
    weight_hh: (G * hidden_size, hidden_size), the recurrent weights in the same order.
    bias_ih, bias_hh: (G * hidden_size,), with bias=True.
{extra_attributes}    Every parameter is initialised from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) as in
    torch.nn, in torch.nn's order, unless said otherwise above.

Example::

{example}
"""


def cell_docstring(
    summary: str,
    equations: str,
    example: str,
    cell: Cell | None = None,
    leading_args: str = "",
    middle_args: str = "",
    trailing_args: str = "",
) -> str:
    """The docstring of a cell module class; `cell` fills in its gates, state and parameters."""
    has_cell_state = cell is None or cell.has_cell_state
    next_state = state_words(cell, "h', c'", "h'")
    outputs = f"    {next_state}: (B, hidden_size), or (hidden_size,) unbatched: the next state.\n"
    gate_names = "of the cell's activations"
    if cell is not None and cell.trace_names:
        names = cell.named_gates(tuple(torch.zeros(()) for _ in cell.trace_names))
        gate_names = "with keys " + ", ".join(repr(name) for name in names)
        if cell.name == "lstm":  # its switches remove gates, and with them their keys
            gate_names += " (less a gate its switch removes)"
    elif cell is not None:
        gate_names = "(empty: this cell has no gates)"
    return CELL_TEMPLATE.format(
        summary=summary,
        equations=equations,
        leading_args=indent(leading_args),
        middle_args=indent(middle_args),
        forget_bias=FORGET_BIAS if cell is None or cell.forget_bias_block is not None else "",
        trailing_args=indent(trailing_args),
        and_cell_state=" (and of the cell state c)" if has_cell_state else "",
        state_in=state_words(cell, "a tuple (h, c)", "a tensor h"),
        state_out=state_words(cell, "(h', c')", "h'"),
        outputs=outputs,
        gate_names=gate_names,
        blocks=block_names(cell),
        extra_attributes=extra_attributes(cell, ""),
        example=indent(example, "    "),
    )
