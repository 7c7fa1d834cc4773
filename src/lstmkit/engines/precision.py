"""In which dtypes a layer runs: matrix products, state and point-wise arithmetic, outputs.

The rule every engine follows, as `torch.nn.LSTM` does under cuDNN and oneDNN:
- float32 and float64 parameters, no autocast: everything in the parameters' dtype.
- `torch.autocast` on the input's device, float32 parameters: the products in the autocast
  dtype; the cell state and the point-wise arithmetic in float32; outputs and final states
  in the autocast dtype, the dtype torch.nn's layers return: under CPU autocast torch.nn.GRU
  returns float32, and so does torch.nn.LSTM given a PackedSequence of uneven lengths (of any,
  in a torch that does not hand equal ones to oneDNN: `lstm_cell_steps`) or input oneDNN does
  not take (float16 with gradients); with a projection its h
  comes out of W_hr in the autocast dtype and c_n in float32; lstmkit's GRU and LSTM do the
  same.
- bfloat16 or float16 parameters, no autocast: the products in that dtype, state and
  point-wise arithmetic in float32, outputs in the parameters' dtype. Under autocast they go
  as float32 parameters do: torch.autocast casts every floating tensor but float64 to its
  dtype, half-precision parameters of either kind included.
- float64 parameters under autocast: everything in float64 (torch.nn's layers fail there).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import torch
from torch import Tensor

from lstmkit.cells import Cell, LayerWeights

HALF_DTYPES = (torch.float16, torch.bfloat16)
# What oneDNN can do on this CPU (its bfloat16 and float16 kernels), read once: torch.compile
# does not trace these calls.
ONEDNN_BUILT = torch.backends.mkldnn.is_available()
ONEDNN_BFLOAT16 = ONEDNN_BUILT and torch.ops.mkldnn._is_mkldnn_bf16_supported()
ONEDNN_FLOAT16 = ONEDNN_BUILT and torch.ops.mkldnn._is_mkldnn_fp16_supported()


class Precision(NamedTuple):
    """compute: the dtype of the matrix products; state: of the state and point-wise math;
    output: of the outputs and the final h; final_cell: of the final cell state c."""

    compute: torch.dtype
    state: torch.dtype
    output: torch.dtype
    final_cell: torch.dtype

    @property
    def mixed(self) -> bool:
        return self.compute != self.state


def autocast_on(device_type: str) -> bool:
    """Whether torch.autocast is on for `device_type`; never on devices it does not know
    (the meta device, where torch.nn's layers run to infer shapes)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def autocast(device_type: str, dtype: torch.dtype | None = None, enabled: bool = True) -> AbstractContextManager:
    """torch.autocast(device_type, dtype, enabled), or no context on devices autocast does not
    know (meta), where nothing is cast, nor where it would turn off an autocast that is off (a
    context torch.export records: its program then failed to save where the region's result
    went unused, "Node.meta wrap_with_autocast is missing val field")."""
    if not torch.amp.is_autocast_available(device_type) or not (enabled or autocast_on(device_type)):
        return nullcontext()
    return torch.autocast(device_type, dtype, enabled)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype torch.autocast casts products to on `device`, or None when it is off."""
    if not autocast_on(device.type):
        return None
    return torch.get_autocast_dtype(device.type)


def precision_for(
    cell: Cell, parameter_dtype: torch.dtype, device: torch.device, cell_steps: bool = False,
    state_dtype: torch.dtype = torch.float32, projected: bool = False, streaming: bool = False,
) -> Precision:
    """The precision a layer of `cell` with parameters in `parameter_dtype` runs in on
    `device`, for a call that torch's CPU LSTM runs as its `cell_steps` (`lstm_cell_steps`) or
    not, from an initial state (c0 where the cell has one, else h0; zeros come in the input's
    dtype) in `state_dtype`, with a projection W_hr where `projected`.

    The outputs under autocast are torch.nn's: on CPU the GRU, and the LSTM where it runs as
    cell steps, are composed of torch's cell steps, whose results promote the autocast dtype
    with the state's (float32 from a float32 state, bfloat16 from a bfloat16 one), but for a
    projected h, which W_hr's product gives in the autocast dtype; elsewhere the autocast dtype.
    But for a `streaming` call (a layer's step()) under autocast the cell state comes back in
    float32, the precision it is computed in, as torch.nn.LSTMCell's does: the next step carries
    it on, and rounding it at every step would drift (c = 1 after 1,000 steps of 0.001 came
    out 0.5 in bfloat16)."""
    autocast = autocast_dtype(device)
    if autocast is None or parameter_dtype == torch.float64:
        state = torch.float32 if parameter_dtype in HALF_DTYPES else parameter_dtype
        return Precision(parameter_dtype, state, parameter_dtype, parameter_dtype)
    composed = device.type == "cpu" and (cell.name == "gru" or (cell.name == "lstm" and cell_steps))
    promoted = torch.promote_types(autocast, state_dtype) if composed else autocast
    return Precision(autocast, torch.float32, autocast if projected else promoted,
                     torch.float32 if streaming else promoted)


def lstm_cell_steps(lengths: Tensor | None, projected: bool, data: Tensor) -> bool:
    """Whether torch's CPU LSTM runs a call on `data` as its cell steps rather than oneDNN's
    LSTM: on packed input (a PackedSequence, or `lengths`, which torch's kernels run as one),
    with a projection, on an empty batch (oneDNN takes none) or on input oneDNN does not take
    (`onednn_takes`). Packed input whose sequences are all one length (its batch sizes equal:
    one sentence's) goes to oneDNN as a padded batch would, in a torch that does so
    (`onednn_takes_even_packed`: 2.13 does, 2.11 does not); its lengths are read only where
    that decides anything, under CPU autocast (the one case where the two paths differ in
    what a layer returns or whether it runs)."""
    if data.numel() == 0 or projected:
        return True
    if lengths is not None and not (autocast_dtype(data.device) is not None
                                    and even_packed_on_onednn(lengths, data, projected)):
        return True
    return not onednn_takes(data.dtype)


def even_packed_on_onednn(lengths: Tensor, data: Tensor, projected: bool) -> bool:
    """Whether torch hands a packed call on `data` of `lengths` to oneDNN's LSTM as a padded
    batch: on CPU, without a projection, on input oneDNN takes (`onednn_takes`: float64 and
    float16 with gradients run as cell steps, equal lengths or not), its lengths all equal, in
    a torch that does so (`onednn_takes_even_packed`)."""
    if data.device.type != "cpu" or projected or not onednn_takes(data.dtype) or not onednn_takes_even_packed():
        return False
    return bool(lengths.min() == lengths.max())


def onednn_takes_even_packed() -> bool:
    """`onednn_runs_even_packed_lstm` where oneDNN is switched on (`torch.backends.mkldnn.enabled`),
    run eagerly under torch.compile too, not traced."""
    if not torch.backends.mkldnn.enabled:
        return False
    if torch.compiler.is_compiling():
        return torch.compiler.disable(onednn_runs_even_packed_lstm)()
    return onednn_runs_even_packed_lstm()


@functools.cache
def onednn_runs_even_packed_lstm() -> bool:
    """Whether this torch hands packed input whose batch sizes are all equal to oneDNN's LSTM,
    rather than to its cell steps: tried once, in float32 with gradients, on two sequences of
    one step; oneDNN's LSTM leaves its own node in the autograd graph."""
    if not ONEDNN_BUILT:
        return False
    with torch.inference_mode(False), torch.enable_grad(), autocast("cpu", enabled=False):
        on_cpu = {"dtype": torch.float32, "device": "cpu"}  # whatever the caller's defaults
        weight, state = torch.zeros(4, 1, requires_grad=True, **on_cpu), torch.zeros(1, 1, 1, **on_cpu)
        output, *_ = torch._VF.lstm(torch.zeros(2, 1, **on_cpu), torch.tensor([1, 1], dtype=torch.int64, device="cpu"),
                                    (state, state), [weight, torch.zeros(4, 1, **on_cpu)], False, 1, 0.0, False, False)
    nodes, seen = [output.grad_fn], set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        if type(node).__name__.startswith("MkldnnRnnLayer"):
            return True
        seen.add(node)
        nodes.extend(next_node for next_node, _ in node.next_functions)
    return False


def onednn_takes(dtype: torch.dtype) -> bool:
    """Whether torch's CPU LSTM hands input of `dtype` to oneDNN's LSTM (at::native's
    use_mkldnn), whatever the autocast, rather than running it as its cell steps: float32;
    bfloat16 on a CPU with oneDNN's bfloat16 kernels; float16 without gradients, on one with its
    float16 kernels; none where oneDNN is switched off (`torch.backends.mkldnn.enabled`; but
    for the switch torch.export turns while it traces: the program runs where it is on, and a
    plain LSTM exported under autocast returned float32 where its eager call returns the autocast
    dtype). What this CPU has is read once, at import: torch.compile traces the rest."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)()  # torch >= 2.6
    if not (ONEDNN_BUILT and (torch.backends.mkldnn.enabled or exporting)):
        return False
    if dtype == torch.bfloat16:
        return ONEDNN_BFLOAT16
    if dtype == torch.float16:
        return not torch.is_grad_enabled() and ONEDNN_FLOAT16
    return dtype == torch.float32


def cast_weights(weights: LayerWeights, products: torch.dtype, others: torch.dtype) -> LayerWeights:
    """`weights` with the product weights (W_ih, W_hh, W_hr) in `products` and the biases and
    extra parameters in `others`; differentiable, and free where a dtype already matches."""

    def cast(tensor, dtype):
        return None if tensor is None else tensor.to(dtype)

    return LayerWeights(
        cast(weights.weight_ih, products),
        cast(weights.weight_hh, products),
        cast(weights.bias_ih, others),
        cast(weights.bias_hh, others),
        cast(weights.weight_hr, products),
        {name: cast(value, others) for name, value in weights.extra.items()},  # a shift set to None too
    )
