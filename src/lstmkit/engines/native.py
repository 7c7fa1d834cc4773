"""The native engine: PyTorch's own kernels (oneDNN on CPU, cuDNN on GPU) for the plain cells.

It runs the whole stack in one call, as torch.nn.LSTM/GRU/RNN do, so it applies only when a
layer is exactly one of those: cell lstm without ablations, gru, or rnn. On CUDA the weights
live in cuDNN's flat buffer (`flatten_weights`), as torch.nn keeps them, so no call compacts
them again. Autocast is torch's own: the kernels cast as torch.nn's layers do, except where
torch's CPU LSTM fails under bfloat16 or float16 autocast (a CPU without AVX-512 BF16 or FP16,
or one where oneDNN has no LSTM primitive in that dtype): there `auto` runs the fused engine,
and `native` says why it cannot, except on packed input (or lengths=) or with a projection,
which torch runs as its cell steps (`lstm_cell_steps`: packed input of one length too, in a
torch that does not hand it to oneDNN).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit.cells import Cell
from lstmkit.engines.base import Engine, Packing, Stack, StackRun, own_cell, run_eagerly
from lstmkit.engines.precision import ONEDNN_BFLOAT16, ONEDNN_FLOAT16, autocast, autocast_dtype

NATIVE_KERNELS = {
    "lstm": torch._VF.lstm,
    "gru": torch._VF.gru,
    "rnn_tanh": torch._VF.rnn_tanh,
    "rnn_relu": torch._VF.rnn_relu,
}
CUDNN_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}
RUN_EAGERLY = ("lstmkit's native engine runs torch's own RNN kernels, which torch.compile runs eagerly, as it runs "
               "torch.nn's RNNs; for fullgraph=True build the layer with engine='fused' (or 'triton' on CUDA)")


def lacks_half_lstm() -> str | None:
    """Why torch.nn.LSTM's oneDNN kernel fails under the CPU autocast that is on ("could not
    create a primitive descriptor"), as the end of a sentence about this CPU; None where it runs."""
    dtype = autocast_dtype(torch.device("cpu"))
    if dtype == torch.bfloat16 and not ONEDNN_BFLOAT16:
        return "which lacks AVX-512 BF16"
    if dtype == torch.float16 and not ONEDNN_FLOAT16:
        return "which lacks AVX-512 FP16"
    if dtype in (torch.bfloat16, torch.float16) and not runs_lstm(dtype, torch.is_grad_enabled()):
        mode = "training" if torch.is_grad_enabled() else "inference"
        return (f"where oneDNN reports {str(dtype).removeprefix('torch.')} support but has no such LSTM primitive "
                f"for {mode}")
    return None


def runs_lstm(dtype: torch.dtype, training: bool) -> bool:
    """`onednn_runs_lstm`, run eagerly under torch.compile too, not traced: on the fake tensors
    the compiler traces with, the LSTM cannot fail. (Disabled here, at the call, so that
    importing lstmkit does not import the compiler, which imports triton.)"""
    if torch.compiler.is_compiling():
        return torch.compiler.disable(onednn_runs_lstm)(dtype, training)
    return onednn_runs_lstm(dtype, training)


@functools.cache
def onednn_runs_lstm(dtype: torch.dtype, training: bool) -> bool:
    """Whether torch's CPU LSTM runs under `dtype` autocast, with gradients on (`training`:
    oneDNN's training primitive) or off (its inference one), tried once on a one-step LSTM of
    size 1. oneDNN's report of the dtype's support is not enough: on an Intel Xeon with AVX-512
    FP16 and AMX-BF16 (no AMX-FP16) it reports float16 support; its float16 inference LSTM
    runs there, and its training one fails. In float32, whatever the caller's default dtype: a
    float64 one is not cast by autocast, so the LSTM always ran, and the answer is kept for the
    process."""
    zeros = torch.zeros(1, 1, 1, dtype=torch.float32)
    weight = torch.zeros(4, 1, dtype=torch.float32)
    with torch.autocast("cpu", dtype), torch.set_grad_enabled(training):
        try:
            torch._VF.lstm(zeros, (zeros, zeros), [weight, weight], False, 1, 0.0, False, False, False)
        except RuntimeError:
            return False
    return True


def kernel_name(cell: Cell) -> str:
    return cell.name if cell.name != "rnn" else f"rnn_{cell.nonlinearity}"


class NativeEngine(Engine):
    """torch's fused RNN kernels, over the whole stack at once."""

    name = "native"
    exposes_gates = False
    runs_packed_rows = True  # torch's kernels take a PackedSequence's rows, as torch.nn hands them over
    # Its one call runs every layer: nothing can act between layers or steps. Weight dropout
    # acts on the weights before the call.
    regularisers = frozenset({"weight_dropout"})

    def unsupported(self, cell: Cell, device: torch.device | None, cell_steps: bool = False) -> str | None:
        reason = own_cell(cell, self.name)
        if reason:
            return reason
        if cell.name == "lstm" and cell.options():
            return f"cell {cell.describe()} is an ablation; the native kernels run the full LSTM only"
        if cell.name not in ("lstm", "gru", "rnn"):
            return f"cell {cell.name!r} has no native kernel (native runs lstm, gru and rnn)"
        on_onednn = cell.name == "lstm" and not cell_steps
        lacking = on_onednn and device is not None and device.type == "cpu" and lacks_half_lstm()
        if lacking:
            dtype = str(autocast_dtype(device)).removeprefix("torch.")
            return f"torch's CPU LSTM kernel (oneDNN) fails under {dtype} autocast on this CPU, {lacking}"
        return None

    @run_eagerly(RUN_EAGERLY)
    def run(
        self, stack: Stack, data: Tensor, packing: Packing | None, h0: Tensor, c0: Tensor | None, return_gates: bool
    ) -> StackRun:
        """The stack over `data` (T, B, I), as torch.nn computes it, packed in `packing.order`
        (torch.nn's inter-layer dropout draws its masks in that order). torch.compile runs it
        eagerly (a graph break), as it runs torch.nn's RNNs: traced, oneDNN's LSTM fails in
        backward (AOTAutograd: "expected all tensors_saved_with_vc_check to be Tensors")."""
        if packing is None or data.shape[1] == 0:  # torch cannot pack an empty batch; it has nothing to mask
            kernel = NATIVE_KERNELS[kernel_name(stack.cell)]
            hx = h0.contiguous() if c0 is None else (h0.contiguous(), c0.contiguous())
            output, *state = kernel(data, hx, flat_weight_list(stack), *kernel_options(stack), False)
            return stack_run(output, state)
        order = packing.order
        with autocast(data.device.type, enabled=False):  # data moved, not computed: float16 autocast
            in_order = pack_padded_sequence(  # refuses bfloat16 data
                data.index_select(1, order), packing.lengths.index_select(0, order).cpu())
        packed = PackedSequence(in_order.data, in_order.batch_sizes, order)  # and the order back
        run = self.run_packed(stack, *packed, h0, c0)
        output, _ = pad_packed_sequence(packed._replace(data=run.output), total_length=data.shape[0])
        return run._replace(output=output)

    @run_eagerly(RUN_EAGERLY)
    def run_packed(self, stack: Stack, rows: Tensor, batch_sizes: Tensor, sorted_indices: Tensor | None,
                   unsorted_indices: Tensor | None, h0: Tensor, c0: Tensor | None) -> StackRun:
        """As torch.nn runs a PackedSequence: its rows straight to the kernel, the initial
        states in its sorted order, the final ones back in the batch's (the indices are None for
        one packed with enforce_sorted=True)."""
        kernel = NATIVE_KERNELS[kernel_name(stack.cell)]
        hx = [h0] if c0 is None else [h0, c0]
        if sorted_indices is not None:
            hx = [part.index_select(1, sorted_indices) for part in hx]
        output, *state = kernel(rows, batch_sizes, hx[0] if c0 is None else tuple(hx), flat_weight_list(stack),
                                *kernel_options(stack))
        if unsorted_indices is not None:
            state = [part.index_select(1, unsorted_indices) for part in state]
        return stack_run(output, state)


def stack_run(output: Tensor, state: list[Tensor]) -> StackRun:
    """A kernel's output and final states ([h_n], or [h_n, c_n] for the LSTM) as a StackRun."""
    return StackRun(output, state[0], state[1] if len(state) > 1 else None, None)


def kernel_options(stack: Stack) -> tuple:
    """The options torch's RNN kernels take after the weights, as torch.nn passes them."""
    return stack.bias, stack.num_layers, stack.dropout, stack.training, stack.bidirectional


def flat_weight_list(stack: Stack) -> list[Tensor]:
    """Every layer's and direction's parameters in torch.nn's order; in a layer built with
    biases, one set to None (folded into the other, say) as zeros: torch's kernels take both
    biases or neither (torch.nn's layers fail there; its cells take None)."""
    tensors = []
    for weights in stack.weights:
        biases = [weights.bias_ih, weights.bias_hh]
        if stack.bias:
            biases = [weights.weight_hh.new_zeros(weights.weight_hh.shape[0]) if bias is None else bias
                      for bias in biases]
        tensors += [tensor for tensor in (weights.weight_ih, weights.weight_hh, *biases, weights.weight_hr)
                    if tensor is not None]
    return tensors


def flatten_weights(stack: Stack, input_size: int, hidden_size: int, proj_size: int, batch_first: bool) -> None:
    """Put the parameters of a native-capable stack on CUDA into one cuDNN buffer, in place
    (the parameters become views of it), as torch.nn.LSTM.flatten_parameters does. A no-op
    where cuDNN would not take them: not on CUDA, mixed dtypes, shared storage, another cell, a
    bias set to None."""
    if NativeEngine().unsupported(stack.cell, None):
        return
    if stack.bias and any(weights.bias_ih is None or weights.bias_hh is None for weights in stack.weights):
        return
    weights = flat_weight_list(stack)
    first = weights[0]
    if any(
        not weight.is_cuda or weight.dtype != first.dtype or not torch.backends.cudnn.is_acceptable(weight)
        for weight in weights
    ):
        return
    if len({weight.data_ptr() for weight in weights}) != len(weights):
        return
    from torch.backends.cudnn import rnn as cudnn_rnn

    per_layer = (4 if stack.bias else 2) + (1 if proj_size else 0)
    with torch.cuda.device_of(first), torch.no_grad():
        if torch._use_cudnn_rnn_flatten_weight():
            torch._cudnn_rnn_flatten_weight(
                weights, per_layer, input_size, cudnn_rnn.get_cudnn_mode(CUDNN_MODES[kernel_name(stack.cell)]),
                hidden_size, proj_size, stack.num_layers, batch_first, stack.bidirectional,
            )
