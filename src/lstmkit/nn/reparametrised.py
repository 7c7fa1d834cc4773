"""Weights under torch's reparametrisations, read and written as their values: pruning
(`torch.nn.utils.prune`: `name_orig` times `name_mask`), parametrisations
(`torch.nn.utils.parametrize`, `parametrizations.weight_norm`/`spectral_norm`) and the
deprecated hook-based `torch.nn.utils.weight_norm` (`name_g`, `name_v`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize, prune
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

PRUNED_SUFFIX = "_orig"  # torch.nn.utils.prune keeps the unpruned weight `name` as `name_orig`


def base_name(name: str, initialisers: dict[str, str]) -> str:
    """The parameter that a name of `named_parameters()` holds: itself, or the one that pruning
    (`weight_hh_orig`), a parametrisation (`parametrizations.weight_hh.original0`, also of a
    pruned `weight_hh_orig`) or the hook-based weight_norm (`weight_hh_g`, `weight_hh_v`) keeps;
    each is initialised as the parameter it holds, as torch.nn's `reset_parameters` does."""
    if name.startswith("parametrizations."):
        name = name.split(".")[1]
    for suffix in (PRUNED_SUFFIX, "_g", "_v"):
        held = name.removesuffix(suffix)
        if held != name and held in initialisers:
            return held
    return name


def read_parameter(module: nn.Module, name: str) -> Tensor:
    """`getattr(module, name)`, read straight from the module's parameters where it is one
    (nn.Module's attribute fallback costs ~0.5–1.5 µs a name, on every call). A weight that a
    hook computes before each call of the module (pruning, the hook-based weight_norm and
    spectral_norm) is computed here as the hook computes it, from what it holds now: the
    attribute is stale until the next call (after `reset_parameters` or an optimizer step, for
    `step()`, which runs no hooks, and `from_layer`). spectral_norm's power iteration is the
    hook's alone: here its current estimate divides. A parametrised weight is read as an
    attribute, computed."""
    found = module._parameters.get(name)
    if found is not None:
        return found
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == name:
            return hook.apply_mask(module)
        if isinstance(hook, WeightNorm) and hook.name == name:
            return hook.compute_weight(module)
        if isinstance(hook, SpectralNorm) and hook.name == name:
            return spectral_normalised(module, hook)
    return getattr(module, name)


def weights_device(module: nn.Module, first_weight: str) -> torch.device:
    """Where `module`'s weights are: its first parameter's device (not reading a parametrised
    weight, computed at each read), or, in a replica that holds them as plain tensors
    (torch.nn.parallel.replicate's, for DataParallel), its weight `first_weight`'s."""
    parameter = next(module.parameters(), None)
    return (parameter if parameter is not None else read_parameter(module, first_weight)).device


def spectral_normalised(module: nn.Module, hook: SpectralNorm) -> Tensor:
    """W / σ with σ = u·(W v) from the hook's latest u and v, as its `compute_weight` gives it
    without iterating, but from copies of u and v: the next call's power iteration writes into
    them, which would fail a backward through this weight."""
    weight = getattr(module, hook.name + "_orig")
    u, v = (getattr(module, hook.name + suffix).clone() for suffix in ("_u", "_v"))
    return weight / torch.dot(u, torch.mv(hook.reshape_weight_to_matrix(weight), v))


@contextmanager
def writable(module: nn.Module, name: str, purpose: str) -> Iterator[Tensor]:
    """A tensor whose in-place changes become parameter `name`'s value: the parameter itself;
    for a pruned one, the unpruned weight it is masked from; for a parametrised one, a copy
    assigned back through the parametrisation's `right_inverse`, refused where reading it back
    does not give that copy (spectral_norm rescales it; weight_norm of a bias cannot hold
    zeros). The hook-based weight_norm and spectral_norm recompute the weight from others at
    every call and take no value. `purpose`, with `{name}`, says who sets it, for the messages."""
    if name in module._parameters:
        yield module._parameters[name]
        return
    setting = purpose.format(name=name)
    mask = module._buffers.get(name + "_mask")
    if mask is not None:  # pruned: into the unpruned weight (itself a parameter, or parametrised)
        with writable(module, name + PRUNED_SUFFIX, purpose) as unpruned:
            yield unpruned
        if not holds(read_parameter(module, name), unpruned * (mask != 0)):
            raise ValueError(f"{setting} through its pruning, whose mask is not 0 or 1 or is applied otherwise "
                             "(a custom pruning method): the pruned weight cannot hold the values")
        return
    if any(isinstance(hook, (WeightNorm, SpectralNorm)) and hook.name == name
           for hook in module._forward_pre_hooks.values()):
        raise ValueError(
            f"{setting}, which a hook recomputes from other parameters at every call (the deprecated "
            "torch.nn.utils.weight_norm or spectral_norm): use torch.nn.utils.parametrizations' weight_norm or "
            "spectral_norm instead"
        )
    if not parametrize.is_parametrized(module, name):
        raise ValueError(
            f"{setting}, which is not a parameter of the {type(module).__name__} any more (deleted, or replaced by a "
            "plain tensor, as AWD-LSTM's WeightDrop does): set the tensor it is computed from instead"
        )
    kinds = ", ".join(type(parametrisation).__name__ for parametrisation in module.parametrizations[name])
    value = getattr(module, name).detach().clone()
    yield value
    with torch.no_grad():
        try:
            setattr(module, name, value)
        except (NotImplementedError, RuntimeError) as error:  # torch raises the latter
            raise ValueError(
                f"{setting} through its parametrisation ({kinds}), which cannot take a value: {error}"
            ) from error
        back = getattr(module, name)
    if not holds(back, value):
        difference = (back - value).abs().max().item()
        said = f"largest difference {difference:.3g}" if math.isfinite(difference) else "some not finite"
        raise ValueError(
            f"{setting} through its parametrisation ({kinds}), which gives back other values ({said}): it cannot "
            "hold them"
        )


def holds(back: Tensor, value: Tensor) -> bool:
    """Whether a weight read `back` is the `value` written, to its dtype's rounding (on the meta
    device, which holds no values, it is taken to be)."""
    if value.device.type == "meta":
        return True
    tolerance = max(1e-4, 4 * torch.finfo(value.dtype).eps) if value.is_floating_point() else 0.0
    return bool(torch.allclose(back, value, rtol=tolerance, atol=tolerance / 100))


@contextmanager
def unchanged_if_refused(module: nn.Module, names: list[str]) -> Iterator[None]:
    """Where any of `names` is pruned or reparametrised (so `writable` may refuse a value), the
    module's state as it was if the block raises ValueError: a refused `reset_parameters`
    leaves nothing re-initialised."""
    if all(name in module._parameters for name in names):
        yield
        return
    saved = {key: value.clone() for key, value in module.state_dict().items()}
    try:
        yield
    except ValueError:
        module.load_state_dict(saved)
        raise
