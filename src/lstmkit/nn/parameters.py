"""The parameters of one layer and direction (or of one cell module): names, shapes and
torch.nn's initialisation, shared by the layers and the cell modules."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lstmkit.cells import Cell, LayerWeights
from lstmkit.nn.inputs import ShapeError
from lstmkit.nn.reparametrised import base_name
from lstmkit.received import received

RESET = "reset_parameters sets {name} (forget_bias, init)"  # who sets a weight, for `writable`'s messages


def parameter_shapes(
    cell: Cell, input_size: int, hidden_size: int, output_size: int, bias: bool, proj_size: int
) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name (without the layer suffix) -> (shape, initialiser), in torch.nn's order, the
    cell's extra parameters last."""
    gate_rows = cell.num_gates * hidden_size
    sizes = {"hidden": hidden_size, "gates": gate_rows}
    shapes = {
        "weight_ih": ((gate_rows, input_size), "uniform"),
        "weight_hh": ((gate_rows, output_size), "uniform"),
    }
    if bias:
        shapes["bias_ih"] = ((gate_rows,), "uniform")
        shapes["bias_hh"] = ((gate_rows,), "uniform")
    if proj_size:
        shapes["weight_hr"] = ((proj_size, hidden_size), "uniform")
    for extra in cell.extra_parameters:
        if bias or not extra.is_bias:
            shapes[extra.name] = ((sizes[extra.size],), extra.init)
    return shapes


def kept_shapes(module: nn.Module, sizes: tuple, compute: Callable[[], object]) -> object:
    """`compute()`, the parameter shapes of `module` at its `sizes` (a tuple of its arguments),
    kept in its __dict__ while those sizes hold: surgery may change a size with its weights."""
    kept = module.__dict__.get("_kept_shapes")
    if kept is None or kept[0] != sizes:
        kept = module.__dict__["_kept_shapes"] = sizes, compute()
    return kept[1]


def bias_names(cell: Cell) -> set[str]:
    """The parameters of `cell` that are biases, which may be set to None (counting as zero)."""
    return {"bias_ih", "bias_hh"} | {extra.name for extra in cell.extra_parameters if extra.is_bias}


def check_weight_shapes(
    weights: dict[str, Tensor | None], shapes: dict[str, tuple[tuple[int, ...], str]], suffix: str,
    sizes: Callable[[], str], cell: Cell,
) -> None:
    """Refuse a weight (name without the layer `suffix` -> tensor, None for one set to None)
    whose shape is not in `shapes`, those of the module's `sizes` (its arguments, in words, made
    only for the message), or set to None but for the biases of `cell`; a weight `shapes` does
    not name (a layer whose `bias` was set to False after it was built keeps its biases, as
    torch.nn's does) is not checked. One set anew,
    `layer.weight_hh_l0 = nn.Parameter(...)`. Some of torch's kernels read such a weight
    unchecked, past its end or short of it (MKL's packed product, oneDNN's LSTM), and
    return numbers. Not while torch.jit.trace records a call: it would record the comparison
    (and fail on a parameter, which it may not make a constant)."""
    if torch.jit.is_tracing():
        return
    for base, value in weights.items():
        expected = shapes[base][0] if base in shapes else None
        if value is None and expected is not None and base not in bias_names(cell):
            raise ShapeError(f"{base}{suffix} is None, but only a bias may be set to None (it counts as zero): give "
                             f"{base}{suffix} a tensor of shape {expected}")
        if value is not None and expected is not None and value.shape != expected:
            raise ShapeError(
                f"{base}{suffix} has shape {tuple(value.shape)}, but the module's sizes ({sizes()}) make it "
                f"{expected}: give it a tensor of that shape, or build a module of the sizes wanted"
            )


# The weights torch.nn's kernels need in one dtype; a cell's extra point-wise weights may differ.
MATRICES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def weights_by_name(weights: LayerWeights) -> dict[str, Tensor | None]:
    """A layer's or cell's weights by name without the layer suffix (MATRICES, then its extras),
    None for one it lacks or that was set to None."""
    return dict(zip(MATRICES, weights[:5], strict=True)) | weights.extra


def check_weights_together(
    weights: dict[str, Tensor | None], suffix: str, first: str, module: str, reference: Tensor
) -> None:
    """Refuse weights (name without the layer `suffix` -> tensor) not all in `reference`'s dtype,
    and not all on meta or none, as torch.nn's kernels demand; `reference` is the weight named
    `first`, `module` says what holds them ("layer", "cell module"). A weight left on meta by
    load_state_dict(..., strict=False, assign=True) would otherwise be computed with as
    uninitialised memory by the engines that fill buffers of their own; weights on two real
    devices fail in torch's first product that mixes them. A cell's extra point-wise weights
    (LayerNorm's gains, the peepholes) may be in another floating dtype, float32 in a bfloat16
    layer say: the engines compute them in their state dtype. (`is` and `is_meta`, not comparing
    devices: ~2-16 µs a call.)"""
    meta, dtype = reference.is_meta, reference.dtype
    for base, tensor in weights.items():
        if tensor is None:
            continue
        name = base + suffix
        if tensor.is_meta is not meta:
            on_meta, real, device = (name, first, reference.device) if tensor.is_meta else (first, name, tensor.device)
            raise ShapeError(
                f"every weight must hold values, or none (a {module} on meta), got {on_meta} on meta and {real} "
                f"on {device}: load_state_dict(..., strict=False, assign=True) leaves a weight it is "
                f"not given where it was, on meta for a {module} built there"
            )
        if base in MATRICES and tensor.dtype is not dtype:
            raise ShapeError(f"every weight matrix and bias must be in {first}'s dtype ({dtype}), "
                             f"got {name} in {tensor.dtype}; convert the {module} with "
                             f"{module.split()[-1]}.to({dtype})")


def register(
    module: nn.Module,
    shapes: dict[str, tuple[tuple[int, ...], str]],
    suffix: str,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    initialisers: dict[str, str],
) -> list[str]:
    """Create the parameters of `shapes` on `module`, named base + `suffix`; record each one's
    initialiser in `initialisers`; return their names. `dtype` must be real floating point:
    torch.nn's layers also run complex numbers, lstmkit's cells compute in real ones."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a real floating-point dtype (torch.float32, float64, float16 or bfloat16), "
                        f"got {received(dtype) if not isinstance(dtype, torch.dtype) else dtype}: lstmkit's cells "
                        "compute in real numbers")  # the string "torch.float64" showed as the dtype
    names = []
    for base, (shape, initialiser) in shapes.items():
        name = base + suffix
        setattr(module, name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        initialisers[name] = initialiser
        names.append(name)
    return names


def initialise(module: nn.Module, initialisers: dict[str, str], hidden_size: int) -> None:
    """torch.nn's initialisation, U(-1/sqrt(H), 1/sqrt(H)), in the parameters' order (so a seed
    gives torch.nn's weights); "ones" and "zeros" for LayerNorm gains and shifts."""
    bound = 1.0 / math.sqrt(hidden_size)
    functions = {
        "uniform": lambda tensor: nn.init.uniform_(tensor, -bound, bound),
        "ones": nn.init.ones_,
        "zeros": nn.init.zeros_,
    }
    for name, parameter in module.named_parameters():  # a subclass's own submodules too, as torch.nn's
        functions[initialisers.get(base_name(name, initialisers), "uniform")](parameter)


def set_forget_bias(cell: Cell, hidden_size: int, forget_bias: float, bias_ih: Tensor | None,
                    bias_hh: Tensor | None) -> None:
    """The forget gate's bias rows: `forget_bias` (its negative on the input gate of cifg, where
    f = 1 - i), through `set_gate_biases`; refused where the biases' dtype cannot hold it (float16
    made it inf in silence, float32 failed inside torch)."""
    block, sign = cell.forget_bias_block
    held = bias_ih if bias_ih is not None else bias_hh
    if abs(forget_bias) > torch.finfo(held.dtype).max:
        raise ValueError(f"forget_bias={forget_bias:g} does not fit the layer's {held.dtype} biases (at most "
                         f"{torch.finfo(held.dtype).max:g} in magnitude)")
    set_gate_biases([(gate_rows(cell, block, hidden_size), sign * forget_bias)], bias_ih, bias_hh)


def gate_rows(cell: Cell, block: str, hidden_size: int) -> slice:
    """The rows of gate `block` in `cell`'s weights and biases."""
    start = cell.weight_blocks.index(block) * hidden_size
    return slice(start, start + hidden_size)


def set_gate_biases(rows: list[tuple[slice, Tensor | float]], bias_ih: Tensor | None, bias_hh: Tensor | None
                    ) -> None:
    """Gate biases b_ih + b_hh set to the values of `rows` (rows, values): `bias_ih`'s rows to them
    and `bias_hh`'s to 0; `bias_hh`'s to them where `bias_ih` was set to None (counts as zero)."""
    held, zeroed = (bias_ih, bias_hh) if bias_ih is not None else (bias_hh, None)
    with torch.no_grad():
        for index, values in rows:
            held[index] = values
            if zeroed is not None:
                zeroed[index] = 0.0


def check_gate_biases_held(module: nn.Module, pairs: list[tuple[str, str]], option: str | None) -> None:
    """Refuse, before anything is reset, an `option` that sets the forget gate's bias
    (forget_bias, init='chrono') where both biases of a layer were set to None: nothing holds it."""
    for pair in pairs if option is not None else ():
        if all(name in module._parameters and module._parameters[name] is None for name in pair):
            raise ValueError(f"reset_parameters sets the forget gate's bias ({option}), but {pair[0]} and {pair[1]} "
                             f"were both set to None: give one of them a tensor, or build the module without {option}")


def bias_option(forget_bias: float | None, init: tuple[str, ...]) -> str | None:
    """The option that sets the forget gate's bias, as given (None where none does)."""
    return f"forget_bias={forget_bias}" if forget_bias is not None else "init='chrono'" if "chrono" in init else None
