"""Engines: how a cell runs over a sequence. Each engine owns its kernels; cells hold the math.

`select_engine` turns a layer's `engine=` into the engine that runs a call. "auto" follows the
rule measured in BENCHMARKS.md: on CPU, torch's oneDNN LSTM for the plain LSTM but on padded
input with gradients over CPU_FUSED_MIN_STEPS steps or more (whose backward grows with the
square of the steps in torch; unless torch hands the call to oneDNN, as torch 2.13 does float32
sequences of one length), oneDNN's rnn and gru too for calls without gradients or of fewer than
CPU_FUSED_MIN_STEPS steps, and the fused engine for every other call (fused measures faster
than oneDNN for rnn and gru on long sequences with gradients, slower on short ones and without
them; than torch's kernel
for the LSTM on padded input, packed, from CPU_FUSED_MIN_STEPS steps); on CUDA, cuDNN for the
cells it runs (the numbers of torch.nn's own modules) and the Triton engine for the others
where triton is installed (measured faster than fused on every row of `benchmarks/gpu.py`),
else the fused engine.
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

from lstmkit.caller import warn_at_caller
from lstmkit.cells import Cell, is_builtin
from lstmkit.engines.base import Engine, LayerEngine, LayerRun, Regularisation, Stack, StackRun
from lstmkit.engines.fused import FusedEngine
from lstmkit.engines.native import NativeEngine, flatten_weights
from lstmkit.engines.precision import Precision, autocast_dtype, precision_for
from lstmkit.engines.reference import ReferenceEngine
from lstmkit.engines.triton import TritonEngine

ENGINES: dict[str, Engine] = {
    engine.name: engine for engine in (NativeEngine(), FusedEngine(), TritonEngine(), ReferenceEngine())
}
ENGINE_CHOICES = ("auto", *ENGINES)
AUTO_NATIVE = {"cpu": ("lstm",), "cuda": ("lstm", "gru", "rnn")}  # where torch's own kernels win
# Where they win on calls without gradients or shorter than CPU_FUSED_MIN_STEPS steps: on CPU,
# one GRU step (B 1, H 64) took 200 µs fused and 59 µs native without gradients, 910 and 239
# with; fused overtook native, with gradients, from 32 to 64 steps (BENCHMARKS.md).
AUTO_NATIVE_SHORT = {"cpu": ("gru", "rnn")}
# Where they win on padded input (lengths=, a PackedSequence) only without gradients or on
# fewer than CPU_FUSED_MIN_STEPS steps: torch's CPU LSTM backpropagates packed input in time
# that grows with the square of its steps (B 32, H 256, forward and backward: 1.4 s at T 200
# and 16.9 s at T 400, where fused took 0.39 and 0.71 s; BENCHMARKS.md).
AUTO_NATIVE_UNPADDED = {"cpu": ("lstm",)}
CPU_FUSED_MIN_STEPS = 64
TRANSFORM_WARNED: set[tuple[str, str]] = set()  # (transform, engine) fallbacks announced


def check_engine_name(engine: object) -> None:
    """Reject an engine name that does not exist (a layer's, or a pipeline config's)."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")


def check_engine(engine: object, cell: Cell, regularisers: frozenset[str] = frozenset()) -> None:
    """Reject, when a layer is built, an engine name that does not exist or cannot run `cell`
    with the `regularisers` it is given."""
    check_engine_name(engine)
    if engine == "auto":
        return
    reason = ENGINES[engine].unavailable() or ENGINES[engine].unsupported(cell, None)
    if reason:
        raise ValueError(f"engine={engine!r} cannot run this layer: {reason}; use engine='auto' or "
                         f"{other_engine(cell)!r}")
    check_regularisers(ENGINES[engine], regularisers)


def other_engine(cell: Cell) -> str:
    """The engine to name beside 'auto' for a `cell` another engine refused: fused, where it has
    a kernel for it, else the reference engine, which runs every cell."""
    return "reference" if ENGINES["fused"].unsupported(cell, None) else "fused"


def check_regularisers(engine: Engine, regularisers: frozenset[str]) -> None:
    missing = regularisers - engine.regularisers
    if missing:
        runs = [name for name in ENGINES if regularisers <= ENGINES[name].regularisers]
        raise ValueError(f"engine={engine.name!r} cannot run {', '.join(sorted(missing))}; use engine='auto' "
                         f"(engines that run it: {', '.join(runs)})")


def exporting() -> bool:
    """Whether torch.export (and torch.onnx.export, built on it) is tracing the call."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.6; none before
    return is_exporting is not None and is_exporting()


def check_strict_export(device: torch.device) -> None:
    """Refuse a strict torch.export (torch.export.export(..., strict=True)) under autocast on
    `device`: it records the products in float32 where they run in the autocast dtype, so the
    program it makes fails at its first call ("Tensor dtype mismatch! Expected: Float, Got:
    c10::BFloat16"; torch 2.13, for any autocast product given to `.to()`, as the engines give
    theirs to the state's dtype). A non-strict export records them as they run."""
    if exporting() and torch.compiler.is_dynamo_compiling() and autocast_dtype(device) is not None:
        raise ValueError("torch.export.export(..., strict=True) under torch.autocast makes a program that fails when "
                         "called (it records the autocast products in float32); export with strict=False, torch's "
                         "default, or outside autocast")


def select_engine(engine: str, cell: Cell, device: torch.device, return_gates: bool = False,
                  regularisers: frozenset[str] = frozenset(), cell_steps: bool = False,
                  long_backward: bool = True, packed: bool = False, streaming: bool = False,
                  lengths_given: bool = False) -> Engine:
    """The engine that runs a call of a layer built with `engine=` on `device`.

    While torch.export traces a layer (torch.onnx.export is built on it), the call runs on the
    reference engine: its loop of the cell's step traces to plain operations that ONNX and every
    runtime take, for every cell. The fused engine's autograd.Function, writing in place into
    buffers, translates to ONNX only in minutes, the Triton kernels not at all, and torch.onnx
    mistranslates torch's own LSTM kernel with proj_size. While torch.jit.trace records a
    call, the fused and Triton engines give way (`traced_engine`): the tracer cannot record
    their ops' arguments (lists of bools), while torch's own kernels it records as they are.
    Under torch.func transforms the reference engine runs too (`reference_under_transform`),
    and for the fused and Triton engines under forward-mode AD (torch.autograd.forward_ad,
    whose dual tensors their autograd.Functions cannot differentiate), and for the native
    engine there where torch's kernels cannot either (`native_takes_dual_tensors`),
    and on the meta device, where a call gives only shapes (the others need the lengths'
    values to run a padded batch).
    Outside these nothing changes.
    `regularisers`: the Regularisation options acting in this call, which the engine must run;
    `cell_steps`: whether torch's CPU kernels run the call as cell steps (`Engine.unsupported`);
    `long_backward`: whether the call needs gradients over CPU_FUSED_MIN_STEPS steps or more;
    `packed`: whether torch's kernels would run it packed, as cell steps (lengths= or a
    PackedSequence, but one of equal lengths that this torch hands to oneDNN);
    `streaming`: whether it is a step() of a cell with a cell state, which under autocast the
    next step carries on: auto runs it on an engine that returns it unrounded, not torch's;
    `lengths_given`: whether the call has lengths (a PackedSequence or `lengths=`), which the
    native engine packs.
    """
    chosen = (auto_engine(cell, device, return_gates, regularisers, cell_steps, long_backward, packed, streaming)
              if engine == "auto" else ENGINES[engine])
    if exporting() or device.type == "meta":  # shapes only, no numbers
        return ENGINES["reference"]
    if torch.jit.is_tracing() and chosen.name not in ("native", "reference"):
        return traced_engine(cell, device, return_gates, regularisers, cell_steps)
    if torch._C._are_functorch_transforms_active():
        return reference_under_transform(chosen)
    if in_dual_level() and (chosen.name in KERNEL_ENGINES or chosen.name == "native"
                            and not native_takes_dual_tensors(cell, device, cell_steps, lengths_given)):
        return reference_under_transform(chosen, "forward-mode AD")
    if engine != "auto":
        reason = chosen.unsupported(cell, device, cell_steps)
        if reason:
            raise ValueError(f"engine={engine!r} cannot run this call: {reason}")
        if return_gates and not chosen.exposes_gates:
            raise ValueError(
                f"the {engine} kernels do not expose gate activations; build the layer with "
                "engine='auto' or 'fused' to use return_gates=True"
            )
        check_regularisers(chosen, regularisers)
    return chosen


def auto_engine(
    cell: Cell, device: torch.device, return_gates: bool, regularisers: frozenset[str], cell_steps: bool,
    long_backward: bool, packed: bool, streaming: bool,
) -> Engine:
    """engine='auto': torch's own kernels where they measured fastest (for rnn and gru on CPU,
    unless the call is a `long_backward` one; for lstm on CPU, unless it is one on `packed`
    input), else Triton on CUDA, else fused; the reference engine for regularisers none of them
    runs, and for a cell of one's own, which none runs."""
    if not is_builtin(cell):  # a cell of one's own: its own step, which the kernels do not run
        return ENGINES["reference"]
    native = ENGINES["native"]
    native_cells = AUTO_NATIVE.get(device.type, ()) + (() if long_backward else AUTO_NATIVE_SHORT.get(device.type, ()))
    if long_backward and packed:
        native_cells = tuple(name for name in native_cells if name not in AUTO_NATIVE_UNPADDED.get(device.type, ()))
    rounds_carried_state = streaming and autocast_dtype(device) is not None  # torch's c_n: the autocast dtype
    if (not return_gates and not rounds_carried_state and cell.name in native_cells
            and not native.unsupported(cell, device, cell_steps) and regularisers <= native.regularisers):
        return native
    triton = ENGINES["triton"]
    if device.type == "cuda" and not triton.unsupported(cell, device) and regularisers <= triton.regularisers:
        return triton
    if regularisers <= ENGINES["fused"].regularisers:
        return ENGINES["fused"]
    return ENGINES["reference"]


def traced_engine(cell: Cell, device: torch.device, return_gates: bool, regularisers: frozenset[str],
                  cell_steps: bool) -> Engine:
    """Under torch.jit.trace, in place of the fused and Triton engines: torch's own kernel
    where it runs the call, one op that the trace runs at any sequence length, as torch.nn's
    (and the same engine whether or not the call needs gradients, so that the tracer's check,
    which runs the call again, records the same graph); else the reference loop, which the
    trace unrolls (`ReferenceEngine` warns). The legacy ONNX exporter, built on the tracer,
    keeps the reference loop: it mistranslates torch's LSTM kernel with proj_size."""
    native = ENGINES["native"]
    if (not return_gates and not torch.onnx.is_in_onnx_export() and regularisers <= native.regularisers
            and not native.unsupported(cell, device, cell_steps)):
        return native
    return ENGINES["reference"]


def reference_under_transform(chosen: Engine, transform: str = "torch.func transforms") -> Engine:
    """Under torch.func transforms (grad, vmap, jacrev, ...), which cannot see into the fused and
    native kernels, and under forward-mode AD for `KERNEL_ENGINES` and for the native calls
    torch's kernels cannot differentiate so (`native_takes_dual_tensors`), the reference
    engine: the same numbers, as plain differentiable ops. Says so once per transform and engine."""
    if chosen.name != "reference" and (transform, chosen.name) not in TRANSFORM_WARNED:
        TRANSFORM_WARNED.add((transform, chosen.name))
        warn_at_caller(
            f"{transform} cannot run the {chosen.name} engine's kernels; lstmkit runs these calls on "
            "the reference engine (the same numbers, slower)"
        )
    return ENGINES["reference"]


KERNEL_ENGINES = ("fused", "triton")
"""The engines whose kernels are lstmkit's own autograd.Functions, with no forward-mode formula."""


def native_takes_dual_tensors(cell: Cell, device: torch.device, cell_steps: bool, lengths_given: bool) -> bool:
    """Whether torch's own layer kernels run a call on dual tensors, as measured on CPU with
    torch 2.13: its GRU and RNN kernels and its LSTM's cell steps (`cell_steps`: float64, a
    projection) do; oneDNN's LSTM (`mkldnn_rnn_layer`) and `pack_padded_sequence`, with which
    the native engine packs a call with lengths, have no forward-mode formula; on CUDA, where
    cuDNN runs every layer, it was not measured and is not assumed."""
    return device.type == "cpu" and (cell.name != "lstm" or cell_steps) and not lengths_given


def in_dual_level() -> bool:
    """Whether forward-mode AD is on (inside torch.autograd.forward_ad.dual_level), where dual
    tensors may come in."""
    return forward_ad._current_level >= 0


__all__ = [
    "ENGINES", "ENGINE_CHOICES", "Engine", "LayerEngine", "LayerRun", "Precision", "Regularisation", "Stack",
    "StackRun",
    "check_engine", "flatten_weights", "precision_for", "select_engine",
]
