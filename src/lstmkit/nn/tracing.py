"""torch.fx's symbolic tracing of a model that holds lstmkit modules."""

from __future__ import annotations

from torch import nn
from torch.fx import Proxy


def fx_leaf_call(module: nn.Module, arguments: tuple, keywords: dict, method: str = "forward") -> Proxy | None:
    """Where torch.fx traces a call of `module` (a Proxy among its `arguments` or `keywords`, or
    in a tuple there, an hx): the call recorded as one call_module node, as fx records torch.nn's
    own layers, which its Tracer takes as leaves (lstmkit's checks refused its stand-in tensors,
    "input must be a Tensor, got Proxy"). None where nothing is traced. The module traced itself,
    fx's root, is refused, as torch.nn's layers are there. Another `method` (a layer's step)
    is recorded as one call_method node on the module."""
    proxy = first_proxy((*arguments, *keywords.values()))
    if proxy is None:
        return None
    tracer = proxy.tracer
    try:
        path = tracer.path_of_module(module)
    except NameError:
        path = ""
    if not path:
        raise TypeError(f"torch.fx cannot trace inside {type(module).__name__} (nor inside torch.nn's recurrent "
                        "modules): trace a module that holds it, where it is recorded as one call (held as a "
                        "submodule: an attribute, or in an nn.ModuleList, not a plain list)")
    if method == "forward":
        return tracer.create_proxy("call_module", path, arguments, keywords)
    held = tracer.create_proxy("get_attr", path, (), {})
    return tracer.create_proxy("call_method", method, (held, *arguments), keywords)


def first_proxy(values: tuple) -> Proxy | None:
    """The first Proxy among `values` or in a tuple or list of them; a plain loop, since every
    call of a module outside tracing asks (a step is a few tens of microseconds)."""
    for value in values:
        if isinstance(value, Proxy):
            return value
        if isinstance(value, (tuple, list)):
            for part in value:
                if isinstance(part, Proxy):
                    return part
    return None
