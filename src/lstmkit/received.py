"""How an error message names a value it was given."""

from __future__ import annotations


def received(value: object) -> str:
    """`value` as Python writes it, with its type: `'yes' (str)`. A type from outside the
    builtins is named with its module, `np.True_ (numpy.bool)`, where its own name (`bool`)
    would read as the very type the message asks for."""
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{value!r} ({name})"
