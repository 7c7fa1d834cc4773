"""The parameters of one layer and direction (or of one cell module): names, shapes and
torch.nn's initialisation, shared by the layers and the cell modules."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lstmkit.cells import Cell

PRUNED_SUFFIX = "_orig"  # torch.nn.utils.prune keeps the unpruned weight `name` as `name_orig`


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


def register(
    module: nn.Module,
    shapes: dict[str, tuple[tuple[int, ...], str]],
    suffix: str,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    initialisers: dict[str, str],
) -> list[str]:
    """Create the parameters of `shapes` on `module`, named base + `suffix`; record each one's
    initialiser in `initialisers`; return their names."""
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
    for name, parameter in module.named_parameters():
        functions[initialisers[base_name(name, initialisers)]](parameter)


def base_name(name: str, initialisers: dict[str, str]) -> str:
    """The parameter that a name of `named_parameters()` holds: itself, or the one that pruning
    (`weight_hh_orig`), a parametrisation (`parametrizations.weight_hh.original0`) or the
    hook-based `torch.nn.utils.weight_norm` (`weight_hh_g`, `weight_hh_v`) keeps; each is
    initialised as the parameter it holds, as torch.nn's `reset_parameters` does."""
    if name.startswith("parametrizations."):
        return name.split(".")[1]
    for suffix in (PRUNED_SUFFIX, "_g", "_v"):
        held = name.removesuffix(suffix)
        if held != name and held in initialisers:
            return held
    return name


def read_parameter(module: nn.Module, name: str) -> Tensor:
    """`getattr(module, name)`, read straight from the module's parameters where it is one
    (nn.Module's attribute fallback costs ~0.5–1.5 µs a name, on every call). A pruned weight
    is its unpruned one times its mask, as pruning's hook computes it before each call (the
    attribute is stale until then: after `reset_parameters`, say, for `from_layer`); a
    parametrised or weight-normed one is read as an attribute."""
    found = module._parameters.get(name)
    if found is not None:
        return found
    unpruned, mask = module._parameters.get(name + PRUNED_SUFFIX), module._buffers.get(name + "_mask")
    if unpruned is not None and mask is not None:
        return unpruned * mask
    return getattr(module, name)


@contextmanager
def writable(module: nn.Module, name: str) -> Iterator[Tensor]:
    """A tensor whose in-place changes become parameter `name`'s value (for `forget_bias` and
    `init`): the parameter itself; for a pruned one, the unpruned weight it is masked from; for
    a parametrised one, a copy assigned back through the parametrisation's `right_inverse`, and
    refused where reading it back does not give that copy (spectral_norm rescales it; weight_norm
    of a bias cannot hold its zeros). The hook-based `torch.nn.utils.weight_norm` and
    `spectral_norm` recompute the weight from others at every call and take no value."""
    if name in module._parameters:
        yield module._parameters[name]
        return
    if name + PRUNED_SUFFIX in module._parameters and name + "_mask" in module._buffers:
        yield module._parameters[name + PRUNED_SUFFIX]
        return
    if not parametrize.is_parametrized(module, name):
        raise ValueError(
            f"reset_parameters sets {name} (forget_bias, init), which a hook recomputes from other parameters at "
            "every call (the deprecated torch.nn.utils.weight_norm or spectral_norm): use "
            "torch.nn.utils.parametrizations' weight_norm or spectral_norm instead"
        )
    kinds = ", ".join(type(parametrisation).__name__ for parametrisation in module.parametrizations[name])
    value = getattr(module, name).detach().clone()
    yield value
    with torch.no_grad():
        try:
            setattr(module, name, value)
        except (NotImplementedError, RuntimeError) as error:  # torch raises the latter
            raise ValueError(
                f"reset_parameters sets {name} (forget_bias, init) through its parametrisation ({kinds}), which "
                f"cannot take a value: {error}"
            ) from error
        back = getattr(module, name)
    if not torch.allclose(back, value, rtol=1e-4, atol=1e-6):
        difference = (back - value).abs().max().item()
        raise ValueError(
            f"reset_parameters sets {name} (forget_bias, init) through its parametrisation ({kinds}), which gives "
            f"back other values (largest difference {difference:.3g}): those options cannot hold under it"
        )


def set_forget_bias(cell: Cell, hidden_size: int, forget_bias: float, bias_ih: Tensor, bias_hh: Tensor) -> None:
    """The forget gate's bias rows: `bias_ih` to `forget_bias` (its negative on the input gate
    of cifg, where f = 1 - i), `bias_hh` to 0."""
    block, sign = cell.forget_bias_block
    start = cell.weight_blocks.index(block) * hidden_size
    rows = slice(start, start + hidden_size)
    with torch.no_grad():
        bias_ih[rows] = sign * forget_bias
        bias_hh[rows] = 0.0
