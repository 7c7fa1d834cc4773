"""Keyword arguments a module or cell does not take, named with the one that was likely meant."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping


def unknown_names(unknown: Iterable[str], known: Iterable[str], elsewhere: Mapping[str, str] | None = None) -> str:
    """Each of `unknown`, quoted, followed by the closest of `known` where one is close
    ('num_layer' (did you mean 'num_layers'?)), comma-separated; one that is, or is close to, a
    name of `elsewhere` (name: where it belongs) is said to belong there."""
    elsewhere = elsewhere or {}
    known = list(known)

    def named(name: str) -> str:
        if name in elsewhere:
            return f"{name!r} ({elsewhere[name]})"
        guess = difflib.get_close_matches(name, [*known, *elsewhere], n=1)
        if not guess:
            return repr(name)
        where = f", {elsewhere[guess[0]]}" if guess[0] in elsewhere else ""
        return f"{name!r} (did you mean {guess[0]!r}{where}?)"

    return ", ".join(named(name) for name in unknown)


def constructor_keywords(module: type, keyword_only: bool = False) -> list[str]:
    """The parameters of `module`'s constructor that can be given by name, in order, with those
    of every class between it and the lstmkit class it derives from (a user's subclass may name
    its own and pass the rest on); with `keyword_only`, the lstmkit class's that can only be
    (its options beyond torch.nn's positional ones)."""
    named = lstmkit_class(module)
    kinds = ((inspect.Parameter.KEYWORD_ONLY,) if keyword_only else
             (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    classes = (named,) if keyword_only else module.__mro__[:module.__mro__.index(named) + 1]
    names = []
    for cls in classes:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # after self
        names += [parameter.name for parameter in parameters if parameter.kind in kinds and parameter.name not in names]
    return names


def lstmkit_class(module: type) -> type:
    """`module`, or the first lstmkit class among its bases (a user's subclass may take any
    arguments, and pass them on)."""
    return next(base for base in module.__mro__ if base.__module__.startswith("lstmkit."))
