"""Keyword arguments a module or cell does not take, named with the one that was likely meant."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable


def unknown_names(unknown: Iterable[str], known: Iterable[str]) -> str:
    """Each of `unknown`, quoted, followed by the closest of `known` where one is close
    ('num_layer' (did you mean 'num_layers'?)), comma-separated."""
    known = list(known)

    def named(name: str) -> str:
        guess = difflib.get_close_matches(name, known, n=1)
        return f"{name!r} (did you mean {guess[0]!r}?)" if guess else repr(name)

    return ", ".join(named(name) for name in unknown)


def constructor_keywords(module: type, keyword_only: bool = False) -> list[str]:
    """The parameters of the constructor of `module` (of the lstmkit class it derives from, for
    a user's subclass) that can be given by name, in order; with `keyword_only`, those that
    can only be (its options beyond torch.nn's positional ones)."""
    parameters = list(inspect.signature(lstmkit_class(module).__init__).parameters.values())[1:]  # after self
    kinds = ((inspect.Parameter.KEYWORD_ONLY,) if keyword_only else
             (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    return [parameter.name for parameter in parameters if parameter.kind in kinds]


def lstmkit_class(module: type) -> type:
    """`module`, or the first lstmkit class among its bases (a user's subclass may take any
    arguments, and pass them on)."""
    return next(base for base in module.__mro__ if base.__module__.startswith("lstmkit."))
