"""One time step of a cell on an engine, for the cell modules (`lstmkit.LSTMCell`, ...).

The engines of a single step: "native" (torch's own cell kernels, `torch._VF.lstm_cell`,
`gru_cell`, `rnn_tanh_cell`, `rnn_relu_cell`: exactly torch.nn.LSTMCell, GRUCell and
RNNCell, for the plain cells), "fused" (the fused engine's point-wise kernels in one
autograd.Function per step, or without it where no gradient is wanted,
`lstmkit.engines.fused.step`; every cell), "triton" (the same step with the Triton engine's
kernels: one kernel launch each way per step; every cell, on CUDA tensors, or on CPU under
TRITON_INTERPRET=1) and "reference" (the cell's `step` under
autograd; every cell). "auto" runs a plain lstm, gru or rnn step on the native kernel and
every other cell, and every `return_gates=True` step, on the Triton one on CUDA where triton
is installed (measured faster than fused there, BENCHMARKS.md) and on the fused one otherwise,
but the LayerNorm LSTM on the CPU on the reference one (REFERENCE_STEP_CELLS): a step of a
plain cell is mostly per-call overhead at small sizes, where torch's single C++ call has the
least (BENCHMARKS.md, "Cell modules").
"""

from __future__ import annotations

import torch
from torch import Tensor

from lstmkit.cells import Cell, LayerWeights
from lstmkit.engines import (ENGINE_CHOICES, ENGINES, KERNEL_ENGINES, check_strict_export, exporting, in_dual_level,
                             other_engine, reference_under_transform)
from lstmkit.engines.base import LayerEngine
from lstmkit.engines.fused.step import StepResult, run_step, step_precision
from lstmkit.engines.native import NativeEngine, kernel_name
from lstmkit.engines.reference import ReferenceEngine
from lstmkit.engines.triton import TritonEngine, off_device

STEP_ENGINES = ENGINE_CHOICES  # a cell module runs on every engine a layer runs on
NATIVE_CELL_KERNELS = {
    "lstm": torch._VF.lstm_cell,
    "gru": torch._VF.gru_cell,
    "rnn_tanh": torch._VF.rnn_tanh_cell,
    "rnn_relu": torch._VF.rnn_relu_cell,
}


def check_step_engine(engine: object, cell: Cell) -> None:
    """Reject, when a cell module is built, an engine that does not exist or cannot run `cell`."""
    if engine not in STEP_ENGINES:
        raise ValueError(f"engine must be one of {', '.join(STEP_ENGINES)}, got {engine!r}")
    reason = None
    if engine in ("native", "fused", "triton"):
        reason = ENGINES[engine].unavailable() or ENGINES[engine].unsupported(cell, None)
    if reason:
        raise ValueError(f"engine={engine!r} cannot run this cell: {reason}; use engine='auto' or "
                         f"{other_engine(cell)!r}")


# Cells whose step `auto` runs on the reference engine on the CPU: the LayerNorm LSTM's, whose
# three layer norms are one C++ call each there, forward and backward, where the fused step
# composes them of a dozen operator calls from Python. It measured faster at every size, with
# and without gradients (1.06-1.66 x the fused step's speed at B 1-64, H 64-512, BENCHMARKS.md,
# "Cell modules"); for the other cells neither engine wins everywhere.
REFERENCE_STEP_CELLS = ("layernorm",)

AUTO_STEP_ENGINE: dict[tuple[Cell, bool, torch.device], str] = {}
"""What `engine="auto"` runs, by cell, return_gates and device, for eager calls (a compiled
call decides afresh: torch.compile guards on what it reads of a global dict, so each entry
another module added would compile every compiled module again)."""


def step_engine_name(engine: str, cell: Cell, return_gates: bool, device: torch.device) -> str:
    """The engine a step of a module built with `engine=` runs on, for input on `device`."""
    if engine == "native" and return_gates:
        raise ValueError(
            "torch's native cell kernels do not expose gate activations; build the cell module "
            "with engine='auto' or 'fused' to use return_gates=True"
        )
    if engine != "auto":
        return engine
    if torch.compiler.is_compiling():
        return auto_step_engine(cell, return_gates, device)
    key = (cell, return_gates, device)
    name = AUTO_STEP_ENGINE.get(key)
    if name is None:  # decided once: a step is called in a loop, where every microsecond shows
        name = AUTO_STEP_ENGINE[key] = auto_step_engine(cell, return_gates, device)
    return name


def auto_step_engine(cell: Cell, return_gates: bool, device: torch.device) -> str:
    """What `engine="auto"` runs a step of `cell` on: torch's cell kernel where it has one and no
    gates are asked for, else Triton on CUDA, else fused (the reference engine for the LayerNorm
    LSTM on the CPU, REFERENCE_STEP_CELLS, and for a cell of one's own)."""
    if not return_gates and not NativeEngine().unsupported(cell, None):
        return "native"
    if device.type == "cuda" and not TritonEngine().unsupported(cell, device):
        return "triton"
    if device.type == "cpu" and cell.name in REFERENCE_STEP_CELLS:
        return "reference"
    return other_engine(cell)


def run_cell_step(
    engine: str, cell: Cell, weights: LayerWeights, x: Tensor, h: Tensor, c: Tensor | None, return_gates: bool
) -> StepResult:
    """One step of `cell` from x (B, I), h (B, H), c (B, H) or None, on `engine` (checked)."""
    name = step_engine_name(engine, cell, return_gates, x.device)
    if name == "native":  # torch's own cell kernel, which tracers, transforms and compilers take as they find it
        kernel = NATIVE_CELL_KERNELS[kernel_name(cell)]
        parameters = (weights.weight_ih, weights.weight_hh, weights.bias_ih, weights.bias_hh)
        if c is None:
            return StepResult(kernel(x, h, *parameters), None, None)
        return StepResult(*kernel(x, (h, c), *parameters), None)
    shapes_only = x.device.type == "meta"
    check_strict_export(x.device)
    if (torch.jit.is_tracing() or exporting() or shapes_only) and name in KERNEL_ENGINES:  # as select_engine does
        name = "reference"
    if name in KERNEL_ENGINES and torch._C._are_functorch_transforms_active():  # as a layer's call
        name = reference_under_transform(ENGINES[name]).name
    if name in KERNEL_ENGINES and in_dual_level():
        name = reference_under_transform(ENGINES[name], "forward-mode AD").name
    if name == "triton":
        reason = off_device(x.device)
        if reason:
            raise ValueError(f"engine='triton' cannot run this step: {reason}")
    if name in KERNEL_ENGINES and torch.compiler.is_compiling():  # the layer's custom op, which the compiler
        return layer_step(ENGINES[name], cell, weights, x, h, c, return_gates)  # traces around in one piece
    if name == "fused":
        return run_step(cell, weights, x, h, c, return_gates)
    if name == "triton":
        from lstmkit.engines.triton.kernels import TRITON_KERNELS  # needs triton, which the check above found

        return run_step(cell, weights, x, h, c, return_gates, TRITON_KERNELS)
    return own_h(cell, layer_step(ReferenceEngine(), cell, weights, x, h, c, return_gates))


def own_h(cell: Cell, step: StepResult) -> StepResult:
    """`step` with an h' of its own where the cell's math returns one that is not: without an
    output gate, h' is tanh(c'), whose backward reads it, or c' itself. So that h' may be
    changed in place before backward (`h[done] = 0`) as on the kernel engines, leaving c' and
    the gradients as they were."""
    if step.c is None or "o" in cell.weight_blocks:
        return step
    return step._replace(h=step.h.clone())


def layer_step(engine: LayerEngine, cell: Cell, weights: LayerWeights, x: Tensor, h: Tensor, c: Tensor | None,
               return_gates: bool) -> StepResult:
    """One step as a layer's call of one step on `engine`: the reference engine's, and the
    kernel engines' under torch.compile, whose graph holds the layer's custom op whole
    (`fullgraph=True` included), where it would break at the step's autograd.Function."""
    precision = step_precision(cell, weights.weight_ih.dtype, x.device, (h if c is None else c).dtype)
    run = engine.run_layer(cell, weights, x.unsqueeze(0), h, c, None, return_gates, precision)
    gates = None if run.gates is None else tuple(gate[0] for gate in run.gates)
    return StepResult(run.h, run.c, gates)
