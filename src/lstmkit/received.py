"""How an error message names a value it was given."""

from __future__ import annotations

import reprlib


# Past this many characters a value is written abbreviated, three items of a sequence, two
# levels deep: a second of log-probabilities given as nested lists made a message of 330,000.
LONGEST_REPR = 200
ABBREVIATED = reprlib.Repr()
ABBREVIATED.maxlist = ABBREVIATED.maxtuple = 3
ABBREVIATED.maxlevel = 2


def received(value: object) -> str:
    """`value` as Python writes it, with its type: `'yes' (str)`. A type from outside the
    builtins is named with its module, `np.True_ (numpy.bool)`, where its own name (`bool`)
    would read as the very type the message asks for. A long one is abbreviated
    (`[0, 1, 2, ...] (list)`: three items of a list or tuple, two levels deep)."""
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = repr(value)
    return f"{text if len(text) <= LONGEST_REPR else ABBREVIATED.repr(value)} ({name})"
