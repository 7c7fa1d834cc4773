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


def keyword_options(module: type) -> list[str]:
    """The keyword-only parameters of `module`'s constructor, in order (its options beyond
    torch.nn's positional ones)."""
    parameters = inspect.signature(module.__init__).parameters.values()
    return [parameter.name for parameter in parameters if parameter.kind is inspect.Parameter.KEYWORD_ONLY]


def constructor_keywords(module: type) -> list[str]:
    """Every parameter of `module`'s constructor that can be given by name."""
    parameters = list(inspect.signature(module.__init__).parameters.values())[1:]  # after self
    return [parameter.name for parameter in parameters
            if parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
