"""One docstring template for the layer classes, filled from the cells so docs follow the code."""

from __future__ import annotations

import inspect

from lstmkit.cells import Cell

TEMPLATE = """{summary}

{equations}

Args:
{leading_args}    input_size: features of the input x.
    hidden_size: features of the hidden state h (and of the cell state c).
    num_layers: recurrent layers stacked; layer k > 0 reads the output of layer k - 1.
        Default: 1
    bias: if False, the layer has no bias_ih and bias_hh (nor any other additive shift).
        Default: True
    batch_first: if True, input and output tensors are (B, T, feature) instead of
        (T, B, feature); h_n and c_n are not affected. Default: False
    dropout: probability of zeroing each output of every layer but the last, in training
        mode only. Default: 0.0
    bidirectional: if True, each layer also runs every sequence backwards and concatenates
        the two outputs. Default: False
{projection}    device, dtype: where and in which type the parameters are created. Default: torch's
{forget_bias}    engine: how the cells run over time: "native" (torch's own kernels, oneDNN/cuDNN;
        plain lstm, gru and rnn only), "fused" (one autograd.Function per layer with a
        hand-derived backward; every cell), "triton" (fused Triton kernels per step, the
        time loop in CUDA graphs; every cell, on CUDA), "reference" (a plain loop under
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
    return_gates (keyword): also return a `GateTrace` of every step's activations (a layer
        on the native engine runs this call on a per-layer one). Default: False

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

PROJECTION = """    proj_size: if > 0, h = W_hr (o ⊙ tanh(c')) has this size (LSTM family only); must
        be smaller than hidden_size. Default: 0
"""

FORGET_BIAS = """    forget_bias: if set, the forget gate's bias starts at this value (bias_ih to it,
        bias_hh to 0); 1.0 is the recommendation of Jozefowicz et al. (2015). Default: None,
        torch.nn's initialisation
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
    blocks = (
        "of each gate (" + ", ".join(f"W_i{block}" for block in cell.weight_blocks) + ")"
        if cell is not None
        else "of the cell's G blocks"
    )
    extra_attributes = ""
    if projects:
        extra_attributes += "    weight_hr_l[k]: (proj_size, hidden_size), with proj_size > 0.\n"
    for parameter in () if cell is None else cell.extra_parameters:
        size = "hidden_size" if parameter.size == "hidden" else "G * hidden_size"
        init = {"uniform": "", "ones": ", initialised to 1", "zeros": ", initialised to 0"}[
            parameter.init
        ]
        condition = ", with bias=True" if parameter.is_bias else ""
        extra_attributes += f"    {parameter.name}_l[k]: ({size},){init}{condition}.\n"
    return TEMPLATE.format(
        summary=summary,
        equations=equations,
        leading_args=indent(leading_args),
        projection=PROJECTION if projects else "",
        forget_bias=FORGET_BIAS if cell is None or cell.forget_bias_block is not None else "",
        trailing_args=indent(trailing_args),
        state_in="a tuple (h_0, c_0)" if has_cell_state else "a tensor h_0",
        state_out="(h_n, c_n)" if has_cell_state else "h_n",
        h_out="proj_size if > 0 else hidden_size" if projects else "hidden_size",
        c_n="    c_n: (num_layers * D, B, hidden_size), the final cell states.\n"
        if has_cell_state
        else "",
        blocks=blocks,
        extra_attributes=extra_attributes,
        example=indent(example, "    "),
    )


def step_equations(cell: Cell) -> str:
    """The equations of a cell, as its `step` docstring gives them."""
    return inspect.cleandoc(type(cell).step.__doc__)


def indent(text: str, prefix: str = "    ") -> str:
    """Indent each line of `text`, ending with a newline if there is any text."""
    return "".join(prefix + line + "\n" for line in text.splitlines())
