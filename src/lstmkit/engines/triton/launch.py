"""What every Triton kernel of the engine shares: its layout on the GPU, its launch (`launch`,
which calls compiled kernels directly), the activations and the reading of dh."""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime import driver

from lstmkit.engines.fused import FusedGrads

try:
    from triton import knobs  # Triton >= 3.3, whose compiled kernels take every argument, constexprs too
except ImportError:
    knobs = None
# Whether `launch` calls compiled kernels itself: with Triton >= 3.3 on NVIDIA GPUs. On AMD's,
# Triton also specialises a tensor on whether its storage fits in 2 GB (buffer operations),
# which `specialisation` does not read, so every launch there goes through Triton.
DIRECT_LAUNCHES = knobs is not None and torch.version.hip is None

# How the kernels are laid out on the GPU (`split_rows`, `whole_rows`), chosen on an H200 by
# `benchmarks/triton_layout.py` (BENCHMARKS.md, "GPU"): splitting rows gains 3–10 % at B 16,
# H 768 and is neutral elsewhere; whole rows want at least four warps (two cost 4–5 % at H 256)
# and gain up to 6 % with eight at H 768–1024.
MAX_BLOCK = 1024  # columns one program handles at most; a row of H > 1024 spans several programs
MIN_BLOCK = 64
MIN_PROGRAMS = 256
COLUMNS_PER_WARP = 128
WHOLE_ROW_COLUMNS_PER_WARP = 128
MIN_WARPS = 1
MIN_WHOLE_ROW_WARPS = 4
MAX_WARPS = 8


SERIES_LIMIT = tl.constexpr(0.125)  # below it tanh takes its odd series, above it the ratio of exponentials


@triton.jit
def tanh(x):
    """tanh(x) to a few ulps in x's dtype, near 0 as well (where 2σ(2x) − 1 loses the leading
    digits): the odd series x − x³/3 + 2x⁵/15 − … (to x¹³) below 1/8, (1 − e^(−2|x|)) / (1 +
    e^(−2|x|)) with x's sign above. The rational coefficients are divided in x's dtype: a
    float literal would be a float32 constant."""
    s = x * x
    zero = s * 0
    series = x * (1 + s * ((zero - 1) / 3 + s * ((zero + 2) / 15 + s * ((zero - 17) / 315 + s * (
        (zero + 62) / 2835 + s * ((zero - 1382) / 155925 + s * (zero + 21844) / 6081075))))))
    decay = tl.exp(-2 * tl.abs(x))
    ratio = (1 - decay) / (1 + decay)
    return tl.where(tl.abs(x) < SERIES_LIMIT, series, tl.where(x < 0, -ratio, ratio))


@triton.jit
def pre_activation(gate_row, product_row, offset, inside, ADD_PRODUCT: tl.constexpr):
    """A gate's pre-activation from the state-dtype buffer, plus, with ADD_PRODUCT, the
    recurrent product in the compute dtype: the float32 sum the engine's addition would make."""
    pre = tl.load(gate_row + offset, mask=inside, other=0.0)
    if ADD_PRODUCT:
        pre += tl.load(product_row + offset, mask=inside, other=0.0)
    return pre


@triton.jit
def recurrent_projection(rec_row, product_row, bias_row, offset, inside, ADD_PRODUCT: tl.constexpr,
                         HAS_BIAS: tl.constexpr, KEEP: tl.constexpr):
    """One block of the recurrent projection handed over apart from the gates (W_hh h, plus
    b_hh with HAS_BIAS): read from `rec`, or, with ADD_PRODUCT, formed here from the product
    in the compute dtype (the float32 sum the engine's addition would make) and, with KEEP,
    kept in `rec` for backward."""
    if ADD_PRODUCT:
        value = tl.load(product_row + offset, mask=inside, other=0.0).to(rec_row.dtype.element_ty)
        if HAS_BIAS:
            value = tl.load(bias_row + offset, mask=inside, other=0.0) + value
        if KEEP:
            tl.store(rec_row + offset, value, mask=inside)
    else:
        value = tl.load(rec_row + offset, mask=inside, other=0.0)
    return value


@triton.jit
def store_gradient(d_gate_row, d_low_row, offset, value, inside, ADD_PRODUCT: tl.constexpr):
    """A gate's gradient into the state-dtype buffer and, with ADD_PRODUCT, in the compute
    dtype for the product that gives d h_{t-1}."""
    tl.store(d_gate_row + offset, value, mask=inside)
    if ADD_PRODUCT:
        tl.store(d_low_row + offset, value.to(d_low_row.dtype.element_ty), mask=inside)


class Layout(NamedTuple):
    """Where a step's kernel runs: its grid, the columns one program handles (the kernels'
    `BLOCK`) and the warps of a program."""

    grid: tuple[int, ...]
    block: int
    num_warps: int


@functools.lru_cache(maxsize=256)
def split_rows(rows: int, hidden_size: int) -> Layout:
    """One program per row and block of columns. A row's block starts as the whole row (up to
    MAX_BLOCK columns) and halves, down to MIN_BLOCK, until the grid has MIN_PROGRAMS programs:
    a small batch otherwise leaves most of a GPU's multiprocessors idle (16 rows of 768 columns
    are 16 programs on a card of 132). Each warp takes COLUMNS_PER_WARP columns."""
    block = min(MAX_BLOCK, triton.next_power_of_2(hidden_size))
    while block > MIN_BLOCK and rows * triton.cdiv(hidden_size, block) < MIN_PROGRAMS:
        block //= 2
    warps = max(MIN_WARPS, min(MAX_WARPS, block // COLUMNS_PER_WARP))
    return Layout((rows, triton.cdiv(hidden_size, block)), block, warps)


@functools.lru_cache(maxsize=256)
def whole_rows(rows: int, hidden_size: int) -> Layout:
    """One program per row, for a kernel that reduces over a whole row (a layer norm), with
    one warp per WHOLE_ROW_COLUMNS_PER_WARP columns."""
    block = triton.next_power_of_2(hidden_size)
    warps = max(MIN_WHOLE_ROW_WARPS, min(MAX_WARPS, block // WHOLE_ROW_COLUMNS_PER_WARP))
    return Layout((rows,), block, warps)


COMPILED: dict[tuple, tuple] = {}
"""The compiled kernels `launch` has seen, by kernel (its id: the kernels are module globals,
and a JITFunction's own hash recomputes its cache key under a lock), device, block and warps
(not the grid, which a launch gives), constexprs and the specialisation of the arguments:
(compiled kernel, every argument name in order)."""


def launch(kernel: triton.JITFunction, layout: Layout, *args: object, **constexprs: object) -> None:
    """`kernel[layout.grid](*args, **constexprs, BLOCK=…, num_warps=…)`, with Triton's per-call work
    done once per specialisation. A cell module calls two kernels per step from the user's own
    loop, uncaptured, where Triton's binding of the arguments (its signature, specialisation and
    cache key, at every call) cost ~42 µs a launch against ~18 µs for the compiled kernel alone
    (H200, BENCHMARKS.md, "Cell modules"). The first launch of a specialisation goes through
    Triton, which compiles or finds the kernel; later ones call the compiled kernel as Triton's
    own launch does. The specialisation is what Triton specialises on, and more: each tensor's
    dtype and 16-byte alignment, every other argument's value. The kernel runs on the GPU of its
    first argument, a tensor, whichever is the current one (Triton launches on the current GPU).
    Under the interpreter, with a Triton older than 3.3 and on AMD GPUs (`DIRECT_LAUNCHES`),
    every launch goes through Triton. What a direct launch skips of Triton's: its pre-run hooks
    and its check that the globals a kernel read have not changed (this engine's never do)."""
    if not isinstance(kernel, triton.JITFunction):  # the interpreter's kernel, on CPU tensors
        through_triton(kernel, layout, args, constexprs)
        return
    device = args[0].device.index
    if device != driver.active.get_current_device():  # as torch's operators, run where the tensors are
        with torch.cuda.device(device):
            launch(kernel, layout, *args, **constexprs)
        return
    if not DIRECT_LAUNCHES:
        through_triton(kernel, layout, args, constexprs)
        return
    key = (
        id(kernel), device, layout.block, layout.num_warps, tuple(constexprs.items()), triton_settings(),
        *map(specialisation, args),
    )
    found = COMPILED.get(key)
    if found is None:
        compiled = through_triton(kernel, layout, args, constexprs)
        if hasattr(compiled, "result"):  # compiled asynchronously
            compiled = compiled.result()
        if compiled is not None:  # None when a cache hook of Triton's declined to compile
            COMPILED[key] = (compiled, kernel.arg_names[len(args):])
        return
    compiled, names = found
    constexprs["BLOCK"] = layout.block
    arguments = (*args, *(constexprs[name] for name in names))
    grid = (*layout.grid, 1, 1)
    stream = driver.active.get_current_stream(device)
    compiled.run(
        grid[0], grid[1], grid[2], stream, compiled.function, compiled.packed_metadata,
        compiled.launch_metadata(layout.grid, stream, *arguments), knobs.runtime.launch_enter_hook,
        knobs.runtime.launch_exit_hook, *arguments,
    )


def through_triton(kernel: triton.JITFunction, layout: Layout, args: tuple, constexprs: dict) -> object:
    """Triton's own launch; it returns the compiled kernel (None under the interpreter). The
    kernels index every tensor as contiguous rows, so one that is not (a view its caller did
    not make contiguous) is refused here, at every launch under the interpreter, where the
    tests run, and at the first of each specialisation on a GPU."""
    for position, argument in enumerate(args):
        if isinstance(argument, Tensor) and not argument.is_contiguous():
            raise RuntimeError(
                f"lstmkit: argument {position} of the Triton kernel {kernel.__name__} is not contiguous (shape "
                f"{tuple(argument.shape)}, strides {argument.stride()}); please report this as a bug"
            )
    return kernel[layout.grid](*args, **constexprs, BLOCK=layout.block, num_warps=layout.num_warps)


def specialisation(argument: object) -> object:
    """What of an argument a compiled kernel depends on: a tensor's dtype and whether its data
    is 16-byte aligned, any other argument's type and value (1, True and 1.0 are three)."""
    if isinstance(argument, Tensor):
        return argument.dtype, argument.data_ptr() % 16 == 0
    return type(argument), argument


def triton_settings() -> tuple:
    """The settings Triton reads into a kernel's options at every launch (its debug mode and
    instrumentation), so that changing one compiles anew, as with Triton's own launch."""
    compilation = knobs.compilation
    return (
        knobs.runtime.debug, getattr(compilation, "instrumentation_mode", None),
        getattr(compilation, "fpsan_homomorphic_casts", None),
    )


@triton.jit
def read_dh(dh, refill, state, inside, REFILL: tl.constexpr):
    """A block of dh; with REFILL, dh then starts over from `refill` (d loss / d h_{t-1} from
    the output), into which the engine adds the product for d h_{t-1} (`FusedKernel.refills_dh`)."""
    d_h = tl.load(dh + state, mask=inside, other=0.0)
    if REFILL:
        tl.store(dh + state, tl.load(refill + state, mask=inside, other=0.0), mask=inside)
    return d_h


class Refilling:
    """The Triton kernels' side of `FusedKernel.refills_dh` and `FusedKernel.writes_dc_apart`:
    the arguments a backward launch takes for them. First among a kernel's bases, beside
    `IndexesItsGates`."""

    refills_dh = True
    writes_dc_apart = True

    @staticmethod
    def dc_arguments(dc: Tensor | None, grads: FusedGrads) -> tuple[Tensor | None, Tensor | None]:
        """dc as the kernel reads it (contiguous) and where it writes d loss / d c: dc itself,
        or `grads.d_c` where given."""
        if grads.d_c is None:
            return dc, dc
        return dc.contiguous(), grads.d_c

    @staticmethod
    def refill_arguments(dh: Tensor, grads: FusedGrads) -> tuple[Tensor, Tensor, dict[str, bool]]:
        """dh as the kernel reads it (itself when refilled: the engine's running rows, which
        are contiguous, and which the kernel writes), the refill (dh where there is none)
        and the REFILL flag."""
        if grads.refill is None:
            dh = dh.contiguous()
            return dh, dh, {"REFILL": False}
        return dh, grads.refill, {"REFILL": True}


class IndexesItsGates:
    """A Triton kernel reads the gate buffers by offset itself, so the engine cuts no views of
    their blocks for it (`FusedKernel.blocks`). First among a kernel's bases."""

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        return {}
