"""lstmkit's own changes to the process's warning filters, safe from threads at once.

Python's `warnings.catch_warnings` (before the context-aware warnings of Python 3.14's
free-threaded builds) saves the whole filter list as a block begins and puts it back as the
block ends: two blocks from threads at once put back each other's, and left one's filter in
place for good (pandas' ParserWarning as an error: a user's `read_csv` raised it afterwards).
`warnings_filtered` puts its own filter in front and takes out that very entry at its end, the
others left where they were; no lock is held while its block runs, so a refit or a
statsforecast fit inside one keeps no other thread waiting. `warnings_recorded` must put back
the list it found (it replaces how warnings are shown, for every thread), so it holds the lock
for its short block, and the others' changes wait for its end. A filter acts on the whole
process while its block runs, as Python's own: another thread's "ignore" block then hides what
an "error" block would raise (a CSV's rows longer than its header, in `read_table`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

LOCK = threading.RLock()


def filters_mutated() -> None:
    """Tell Python the filter list changed (as `warnings.filterwarnings` does): the warnings
    each module has shown once are forgotten, so the filters now in force act on them."""
    getattr(warnings, "_filters_mutated", getattr(warnings, "_filters_mutated_lock_held", lambda: None))()


@contextlib.contextmanager
def warnings_filtered(action: str, categories: type[Warning] | tuple[type[Warning], ...] = Warning,
                      message: str = "") -> Iterator[None]:
    """`warnings.filterwarnings(action, message, category)` for each of `categories` in force
    inside the block, put in front of the others without moving any of them, and at its end
    those entries taken out alone."""
    categories = categories if isinstance(categories, tuple) else (categories,)
    if getattr(sys.flags, "context_aware_warnings", False):  # each thread's own filters: Python's block is safe
        with warnings.catch_warnings():
            for category in categories:
                warnings.filterwarnings(action, message, category)
            yield
        return
    pattern = re.compile(message, re.I) if message else None
    entries = [(action, pattern, category, None, 0) for category in categories]  # as filterwarnings makes them
    try:
        with LOCK:
            warnings.filters[:0] = entries
            filters_mutated()
        yield
    finally:
        with LOCK:
            for entry in entries:
                position = next((index for index, kept in enumerate(warnings.filters) if kept is entry), None)
                if position is not None:
                    del warnings.filters[position]
            filters_mutated()


@contextlib.contextmanager
def warnings_recorded() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised inside the (short) block, recorded rather than shown:
    `warnings.catch_warnings(record=True)` with the filter "always", holding the lock, so that
    the filter list it puts back at its end undoes no change another block made meanwhile."""
    with LOCK, warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        yield said


def forked() -> None:
    """A child forked while another thread held the lock would wait for it for ever."""
    global LOCK
    LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forked)
