"""From what the user passes to the engines' layout (time-major, batched, with lengths) and back.

Every check here names what was expected and what was received.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit.warning_filters import warnings_filtered
from lstmkit.engines import check_strict_export, exporting
from lstmkit.engines.base import Packing
from lstmkit.engines.precision import autocast_dtype
from lstmkit.received import received


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong size, dtype or device. torch.nn raises RuntimeError for these
    (ValueError for a layer's input dtype) and lstmkit's checks have raised ValueError: it is
    both, so `except` of either catches it. Named where users import it, `lstmkit.ShapeError`,
    in tracebacks."""


ShapeError.__module__ = "lstmkit"


@dataclass(frozen=True)
class SequenceBatch:
    """Input as the engines take it, and how to give outputs back in the user's layout.

    source: (T, B, I), time-major; for a PackedSequence its rows (N, I), which `data` pads
        only for an engine that asks (the native engine runs them as they are, as torch.nn).
    steps, batch_size: T and B.
    lengths: (B,) int64 on the source's device, or None when every sequence has all T steps.
    order: with lengths, the batch index of each packed row (Packing.order); else None.
    packed: the PackedSequence the input came as (its output is packed the same way), or None.
    batched: False for unbatched 2-D input (B = 1 inside).
    batch_first: whether the user's tensors put the batch first.
    """

    source: Tensor
    steps: int
    batch_size: int
    lengths: Tensor | None
    order: Tensor | None
    packed: PackedSequence | None
    batched: bool
    batch_first: bool

    @property
    def data(self) -> Tensor:
        """(T, B, I), time-major: the source, or a PackedSequence's rows padded, in the batch's order
        (each time it is asked: an engine asks once; not a functools.cached_property, whose lock
        torch.compile cannot trace)."""
        return self.source if self.packed is None else padded_from_packed(self.repacked(self.source))

    def repacked(self, rows: Tensor) -> PackedSequence:
        """`rows` packed as the input was (built anew, not `_replace`d: under torch.compile a
        replaced PackedSequence crossed into the native engine's eager call without its fields)."""
        packed = self.packed
        return PackedSequence(rows, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)

    @property
    def packing(self) -> Packing | None:
        """How the engines pack the batch, or None when every sequence has all T steps."""
        return None if self.lengths is None else Packing(self.lengths, self.order)

    def restore_output(self, output: Tensor, packed_rows: bool = False) -> Tensor | PackedSequence:
        """(T, B, F) time-major output, or with `packed_rows` the rows of a packed input's
        output -> the layout the input came in."""
        if packed_rows:
            return self.repacked(output)
        if self.packed is not None:
            order = self.packed.sorted_indices  # None when packed with enforce_sorted=True
            sorted_output = output if order is None else output.index_select(1, order)
            return self.repacked(packed_data(sorted_output, self.packed.batch_sizes))
        return self.restore_per_step(output, time_dim=0)

    def restore_per_step(self, tensor: Tensor, time_dim: int) -> Tensor:
        """A time-major tensor (..., T, B, F) with T at `time_dim` -> the user's batch layout."""
        if not self.batched:
            return tensor.squeeze(time_dim + 1)
        if self.batch_first and self.packed is None:
            return tensor.transpose(time_dim, time_dim + 1)
        return tensor

    def restore_state(self, state: Tensor) -> Tensor:
        """(L*D, B, F) final state -> (L*D, F) for unbatched input."""
        return state if self.batched else state.squeeze(1)


def prepare_input(
    input: Tensor | PackedSequence,
    lengths: Tensor | Sequence[int] | None,
    input_size: int,
    batch_first: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> SequenceBatch:
    """Check `input` (and `lengths`) against parameters of `dtype` on `device`, and put it in
    the engines' layout."""
    if exporting():
        if lengths is not None or isinstance(input, PackedSequence):
            raise ValueError("a call with lengths= or a PackedSequence does not export: torch.export cannot trace "
                             "the check of the lengths (nor torch.nn's packing); export the model on input whose "
                             "sequences all run every step")
        check_strict_export(device)
    if isinstance(input, PackedSequence):
        if lengths is not None:
            raise ValueError(
                "lengths= is for padded tensor input; a PackedSequence carries its own lengths"
            )
        if input.data.dim() != 2:
            raise ValueError(f"a PackedSequence's data must be 2-D (rows, input_size), got {input.data.dim()}-D with "
                             f"shape {tuple(input.data.shape)}: pack a 3-D (T, B, input_size) batch")
        check_features(input.data, input_size, dtype, device)
        check_batch_sizes(input)
        data, batch_sizes = input.data, input.batch_sizes
        order = input.sorted_indices  # None when packed with enforce_sorted=True: in the batch's order
        if order is None:
            order = torch.arange(int(batch_sizes[0]), device=data.device)
        return SequenceBatch(data, len(batch_sizes), int(batch_sizes[0]), packed_lengths(input).to(data.device),
                             order, input, True, batch_first)
    if not isinstance(input, Tensor):
        raise TypeError(
            f"input must be a Tensor or a PackedSequence, got {type(input).__name__}"
        )
    if input.dim() not in (2, 3):
        raise ValueError(
            "input must be 3-D (batched: (T, B, I), or (B, T, I) with batch_first) or 2-D "
            f"(unbatched: (T, I)), got {input.dim()}-D with shape {tuple(input.shape)}"
        )
    check_features(input, input_size, dtype, device)
    batched = input.dim() == 3
    if not batched:
        data = input.unsqueeze(1)
    elif batch_first:
        data = input.transpose(0, 1)
    else:
        data = input
    if data.shape[0] == 0:
        raise ShapeError(f"input must have at least one time step, got shape {tuple(input.shape)}")
    checked_lengths = None if lengths is None else check_lengths(lengths, *data.shape[:2])
    order = None
    if checked_lengths is not None:
        # as pack_padded_sequence(enforce_sorted=False) orders them, sorted on the CPU: ties alike
        order = torch.sort(checked_lengths.cpu(), descending=True).indices.to(data.device)
        checked_lengths = checked_lengths.to(data.device)
        data = without_padding(data, checked_lengths)
    return SequenceBatch(data, *data.shape[:2], checked_lengths, order, None, batched, batch_first)


def by_indexing() -> bool:
    """Whether to pack and unpack by indexing (index_select, which autocast leaves alone, as it
    does not index_copy or cat: they fail on bfloat16 data under float16 autocast) rather than
    by torch's pack_padded_sequence and pad_packed_sequence: under torch.func's transforms (grad,
    vmap), whose tensors lack the memory torch's kernels read ("Cannot access data pointer of
    Tensor that doesn't have storage"). Elsewhere torch's kernels: one call, and torch.compile
    traces them without saving indices for backward, which it frees after a first backward (a
    second, retain_graph=True, is refused)."""
    return torch._C._are_functorch_transforms_active()


def packed_data(sorted_output: Tensor, batch_sizes: Tensor) -> Tensor:
    """The data of a PackedSequence of `batch_sizes` (on the CPU: no copy back from the device)
    from `sorted_output` (T, B, ·), its sequences sorted by length (`by_indexing` says how)."""
    running = running_steps(batch_sizes)
    if by_indexing():
        positions = running.flatten().nonzero().squeeze(1).to(sorted_output.device)
        return sorted_output.flatten(0, 1).index_select(0, positions)
    return pack_padded_sequence(sorted_output, running.sum(0)).data


def running_steps(batch_sizes: Tensor) -> Tensor:
    """(T, B) bool, whether each sequence of a PackedSequence of `batch_sizes`, sorted by length,
    runs each step."""
    return torch.arange(int(batch_sizes[0])).unsqueeze(0) < batch_sizes.unsqueeze(1)


def packed_lengths(packed: PackedSequence) -> Tensor:
    """pad_packed_sequence's lengths of `packed`, (B,) on the CPU in the batch's order (on the
    meta device, whose sorting indices hold no values, in the packed order), from its batch sizes."""
    lengths = running_steps(packed.batch_sizes).sum(0)
    unsort = packed.unsorted_indices
    return lengths if unsort is None or packed.data.is_meta else lengths[unsort.cpu()]


def padded_from_packed(packed: PackedSequence) -> Tensor:
    """pad_packed_sequence's data (T, B, ·) zero-padded, in the batch's order (`by_indexing`
    says how: each step of each sequence read from its packed row in one index_select, the
    steps past its end zeroed). On the meta device, whose sorting indices hold no values to
    unsort by, in the packed order (shapes only)."""
    if not by_indexing():
        return pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes)
                                   if packed.data.device.type == "meta" else packed)[0]
    data, batch_sizes = packed.data, packed.batch_sizes
    steps, batch_size = batch_sizes.shape[0], int(batch_sizes[0])
    running = running_steps(batch_sizes)
    rows = running.flatten().cumsum(0).sub(1).view(steps, batch_size)  # a running step's packed row
    unsort = packed.unsorted_indices
    if unsort is not None and data.device.type != "meta":
        unsort = unsort.cpu()
        running, rows = running[:, unsort], rows[:, unsort]
    padded = data.index_select(0, rows.flatten().to(data.device)).view(steps, batch_size, *data.shape[1:])
    ended = ~running.view(steps, batch_size, *[1] * (data.dim() - 1)).to(data.device)
    return padded.masked_fill(ended, 0)


def without_padding(data: Tensor, lengths: Tensor) -> Tensor:
    """`data` (T, B, I) with the steps past each sequence's length set to 0, which packing
    leaves out: no output reads them, but a NaN or inf there (NaN-padded features, a buffer
    from torch.empty) reached the weights' gradients as 0 · NaN, through the products over every
    step of the fused and Triton engines and the local derivatives of the reference engine.
    The gradient of the padding is 0 either way."""
    padding = torch.arange(data.shape[0], device=data.device).unsqueeze(1) >= lengths  # (T, B)
    return data.masked_fill(padding.unsqueeze(-1), 0)


def as_run_under_autocast(tensor: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """`tensor` (input or state) as parameters of `dtype` run it under autocast, where autocast
    is on: in float64 with float64 parameters (which run in float64, `engines.precision`), in
    float32 where it is float64 and they are not. torch's kernels refuse a mix of float64 and the
    autocast dtype (`mat1 and mat2 must have the same dtype`), which the native engine, `auto`'s
    choice, met: float32 input to float64 parameters, or float64 input to float32 ones, whose
    float32 copy equals it to the autocast dtype's precision."""
    if tensor is None or autocast_dtype(tensor.device) is None:
        return tensor
    if dtype == torch.float64:
        return tensor.double() if tensor.is_floating_point() else tensor
    return tensor.float() if tensor.dtype == torch.float64 else tensor


def accepts_dtype(tensor: Tensor, dtype: torch.dtype) -> bool:
    """Whether `tensor` may meet parameters of `dtype`: the same dtype, or, under autocast on
    its device, any floating-point dtype (torch.nn's RNNs skip their dtype check under
    autocast; the engines cast the input and state to the precision they run in)."""
    return tensor.dtype == dtype or (tensor.is_floating_point() and autocast_dtype(tensor.device) is not None)


def quiet_when_traced(check: Callable) -> Callable:
    """`check`, run under torch.jit.trace without its TracerWarnings: the shapes it compares
    are the traced ones, for which it holds, and torch.nn's cells make no comparison the tracer
    sees (it warned of "Converting a tensor to a Python boolean" at each)."""

    @functools.wraps(check)
    def checked(*arguments, **keywords):
        if not torch.jit.is_tracing():
            return check(*arguments, **keywords)
        with warnings_filtered("ignore", torch.jit.TracerWarning):
            return check(*arguments, **keywords)

    return checked


def checked_return_gates(return_gates: object) -> bool:
    """A flag every engine reads alike: a bool, not something truthy. While torch.jit.trace
    records a call (torch.onnx.export(..., dynamo=False) passes every argument of `forward`,
    its defaults too, and the tracer turns a bool into a 0-d tensor), a 0-d bool tensor too."""
    if torch.jit.is_tracing() and isinstance(return_gates, Tensor) and return_gates.dtype == torch.bool \
            and return_gates.dim() == 0:
        # the flag as traced: torch.nn's cells take none the tracer sees
        with warnings_filtered("ignore", torch.jit.TracerWarning):
            return bool(return_gates)
    if not isinstance(return_gates, bool):
        raise TypeError(f"return_gates must be a bool, got {received(return_gates)}")
    return return_gates


def check_features(
    input: Tensor, input_size: int, dtype: torch.dtype, device: torch.device, module: str = "layer"
) -> None:
    """The last dimension must be `input_size`, the dtype the parameters' (or autocast's), the
    device the parameters'; `module` ("layer" or "cell") names the module in messages."""
    if input.device != device:
        raise ShapeError(
            f"input must be on the parameters' device ({device}), got a tensor on {input.device}; move it "
            f"with input.to({str(device)!r}) or the module with module.to({str(input.device)!r})"
        )
    check_input_size(input, input_size)
    if not dtype.is_floating_point:  # the module moved with .to(torch.complex64), say
        raise ShapeError(f"lstmkit's {module}s compute in real floating point, but this {module}'s parameters are "
                         f"{dtype}; convert it with {module}.to(torch.float32) (or float64, float16, bfloat16)")
    if not input.is_floating_point():
        convert = "input.dequantize()" if input.is_quantized else f"input.to({dtype})"  # a QuantStub's output
        raise ShapeError(f"input dtype must be a floating-point type, the {module}'s ({dtype}), got {input.dtype}; "
                         f"convert the input with {convert}")
    if not accepts_dtype(input, dtype):
        raise ShapeError(
            f"input dtype must match the {module}'s parameters ({dtype}), got {input.dtype}; "
            f"convert the input with input.to({dtype}) or the {module} with {module}.to({input.dtype})"
        )


def check_input_size(input: Tensor, input_size: int) -> None:
    """The last dimension must be `input_size`."""
    if input.shape[-1] != input_size:
        raise ShapeError(
            f"input.size(-1) must equal input_size={input_size}, got {input.shape[-1]} "
            f"(input shape {tuple(input.shape)})"
        )


def check_batch_sizes(packed: PackedSequence) -> None:
    """A PackedSequence built by hand: its batch_sizes must be positive, non-increasing, and sum
    to its data's rows (pack_padded_sequence's always are); else steps would read rows of other
    steps, or drop some; and, as torch's packing reads them, a 1-D int64 tensor on the CPU. Its
    sorting indices, where given, must be a permutation of the batch, unsorted_indices only with
    the sorted_indices they undo."""
    batch_sizes = packed.batch_sizes  # a tensor: torch's PackedSequence refuses anything else
    if batch_sizes.dim() != 1 or batch_sizes.dtype != torch.int64 or batch_sizes.device.type != "cpu":
        raise ValueError(f"a PackedSequence's batch_sizes must be a 1-D int64 tensor on the CPU (as "
                         f"pack_padded_sequence makes it), got a {batch_sizes.dim()}-D {batch_sizes.dtype} tensor on "
                         f"{batch_sizes.device}")
    sizes = batch_sizes.tolist()
    rows = packed.data.shape[0]
    if not sizes or sizes[-1] < 1 or any(later > earlier for earlier, later in zip(sizes, sizes[1:])) \
            or sum(sizes) != rows:
        shown = sizes if len(sizes) <= 12 else [*sizes[:12], "..."]
        raise ValueError(f"a PackedSequence's batch_sizes must be positive, non-increasing and sum to its data's rows "
                         f"({rows}), got {shown} (sum {sum(sizes)})")
    batch = sizes[0]
    for name in ("sorted_indices", "unsorted_indices"):
        indices = getattr(packed, name)
        if indices is not None and (indices.shape != (batch,) or not indices.is_meta and not torch.equal(
                indices.sort().values.cpu(), torch.arange(batch))):
            shown = tuple(indices.shape) if indices.is_meta or indices.numel() > 12 else indices.tolist()
            raise ValueError(f"a PackedSequence's {name} must be a permutation of its {batch} sequences, got {shown}")
    order, back = packed.sorted_indices, packed.unsorted_indices
    if order is None and back is not None:
        raise ValueError("a PackedSequence's unsorted_indices come with its sorted_indices, which they undo (torch's "
                         "packing never makes one without the other): without them the batch has no one order "
                         "(torch.nn runs the initial state in the packed order and unsorts the final state alone); "
                         "give both (sorted_indices=unsorted_indices.argsort()) or neither")
    if order is not None and back is not None and not order.is_meta and not torch.equal(
            back[order].cpu(), torch.arange(batch)):
        raise ValueError("a PackedSequence's unsorted_indices must undo its sorted_indices (unsorted_indices["
                         "sorted_indices] = 0, 1, ...); the outputs would come back in another order")


def check_lengths(lengths: Tensor | Sequence[int], steps: int, batch_size: int) -> Tensor:
    """`lengths`: one integer per sequence, each in [1, T], as a tensor (on any device), a numpy
    array or a sequence of ints (or of 0-d integer tensors). Returned as an int64 tensor."""
    if not isinstance(lengths, (Tensor, np.ndarray, Sequence)) or isinstance(lengths, str | bytes):
        raise TypeError(
            f"lengths must hold one integer per sequence (a tensor, a numpy array or a list), got {lengths!r}"
        )
    if isinstance(lengths, np.ndarray):
        if lengths.size == 0:  # np.array([]), for a batch of none, is float64
            lengths = lengths.astype(np.int64)
        if not np.issubdtype(lengths.dtype, np.integer):
            raise TypeError(f"lengths must hold integers, got a numpy array of dtype {lengths.dtype}")
        lengths = torch.from_numpy(lengths)
    if isinstance(lengths, Tensor):
        if vmapped(lengths):
            raise ValueError("lengths cannot be batched by torch.func.vmap: they choose the steps each call runs, "
                             "which vmap runs alike for all; give every call the same lengths (in_dims None for "
                             "them), or loop over the samples")
        if lengths.numel() == 0:  # torch.tensor([]), for a batch of none, is float32
            lengths = lengths.long()
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if lengths.is_meta:  # a meta layer's call may take them, but only as values
            raise ValueError("lengths on the meta device hold no values, and a batch's steps depend on them; give "
                             "them as a list or a CPU tensor")
        values = lengths.to(torch.int64)
    else:
        if not all(is_integer(value) for value in lengths):
            raise TypeError(f"lengths must hold integers, got {list(lengths)!r}")
        values = torch.tensor([int(value) for value in lengths], dtype=torch.int64)
    if values.dim() != 1 or values.shape[0] != batch_size:
        raise ShapeError(
            f"lengths must have one entry per sequence, shape ({batch_size},), "
            f"got shape {tuple(values.shape)}"
        )
    out_of_range = (values < 1) | (values > steps)
    if out_of_range.any():
        position = int(out_of_range.nonzero()[0, 0])
        ended = "" if values[position] != 0 else (
            "; remove an empty sequence from the batch (in a stream of chunks, one that ended in an earlier chunk "
            "leaves it, its state kept aside), as torch.nn's pack_padded_sequence refuses 0 too")
        raise ShapeError(
            f"lengths must be in [1, {steps}] (the input has {steps} time steps), "
            f"got lengths[{position}] = {int(values[position])}{ended}"
        )
    return values


def vmapped(tensor: Tensor) -> bool:
    """Whether `tensor` is batched by a torch.func.vmap, at any level of torch.func's wrappers
    (vmap(grad(f)) wraps the batched tensor for grad)."""
    while torch._C._functorch.is_functorch_wrapped_tensor(tensor):
        if torch._C._functorch.is_batchedtensor(tensor):
            return True
        tensor = torch._C._functorch.get_unwrapped(tensor)
    return False


def is_integer(value: object) -> bool:
    """An int (not a bool), a numpy integer, or a 0-d integer tensor (`list(lengths_tensor)`,
    which pack_padded_sequence takes too)."""
    if isinstance(value, Tensor):
        return value.dim() == 0 and not (value.dtype.is_floating_point or value.dtype.is_complex
                                         or value.dtype == torch.bool)
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def prepare_state(
    hx: object,
    batch: SequenceBatch,
    has_cell_state: bool,
    expected_h: tuple[int, int],
    expected_c: tuple[int, int],
    dtype: torch.dtype,
) -> tuple[Tensor | None, Tensor | None]:
    """Check `hx` against the input; returns (h0, c0) as (L*D, B, ·) or None for zeros.

    `expected_h`, `expected_c`: (L*D, features) of h_0 and c_0.
    """
    if hx is None:
        return None, None
    if has_cell_state:
        if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(
                f"hx must be a tuple (h_0, c_0) of two tensors for this cell, got {describe(hx)}"
            )
        h0, c0 = hx
        return (
            check_state_tensor(h0, "hx[0] (h_0)", batch, expected_h, dtype),
            check_state_tensor(c0, "hx[1] (c_0)", batch, expected_c, dtype),
        )
    return check_state_tensor(hx, "hx (h_0)", batch, expected_h, dtype), None


def check_state_tensor(
    tensor: object, label: str, batch: SequenceBatch, expected: tuple[int, int], dtype: torch.dtype
) -> Tensor:
    """One initial-state tensor: (L*D, B, F) for batched input, (L*D, F) for unbatched."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{label} must be a Tensor, got {describe(tensor)}")
    layers_directions, features = expected
    batch_size = batch.batch_size
    if batch.batched:
        shape = (layers_directions, batch_size, features)
        layout = "(num_layers * num_directions, batch, features)"
    else:
        shape = (layers_directions, features)
        layout = "(num_layers * num_directions, features) for unbatched input"
    if tuple(tensor.shape) != shape:
        raise ShapeError(f"{label} must have shape {shape} {layout}, got {tuple(tensor.shape)}")
    if tensor.device != batch.source.device:
        raise ShapeError(
            f"{label} must be on the input's device ({batch.source.device}), got a tensor on {tensor.device}"
        )
    if not accepts_dtype(tensor, dtype):
        raise ShapeError(f"{label} dtype must match the layer's parameters ({dtype}), got {tensor.dtype}")
    return tensor if batch.batched else tensor.unsqueeze(1)


def describe(value: object) -> str:
    """A short description of a received value for error messages."""
    if isinstance(value, Tensor):
        # under torch.jit.trace a size is a 0-d tensor: the int it holds
        with warnings_filtered("ignore", torch.jit.TracerWarning):
            return f"Tensor of shape {tuple(int(size) for size in value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}: ({', '.join(describe(v) for v in value)})"
    return type(value).__name__
