"""lstmkit's own changes to the process's warning filters, safe from threads at once.

Python's `warnings.catch_warnings` (before 3.14) saves the whole filter list as a block begins
and puts it back as the block ends: two blocks from threads at once put back each other's, and
left one's filter in place for good (pandas' ParserWarning as an error: a user's `read_csv`
raised it afterwards). `warnings_filtered` adds its filters and takes out only those, each held
by a count; no lock is held while its block runs, so a refit or a statsforecast fit inside one
keeps no other thread waiting. `warnings_recorded` must put back the list it found (it replaces
how warnings are shown), so it holds the lock for its short block, and the others' changes wait
for its end.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator

LOCK = threading.RLock()
# The filters lstmkit's blocks added and hold now, by entry: how many blocks hold each.
HELD: dict[tuple, int] = {}


def filters_mutated() -> None:
    """Tell Python the filter list changed (as `warnings.filterwarnings` does): the warnings
    each module has shown once are forgotten, so a filter now in force acts on them."""
    getattr(warnings, "_filters_mutated", getattr(warnings, "_filters_mutated_lock_held", lambda: None))()


@contextlib.contextmanager
def warnings_filtered(action: str, categories: type[Warning] | tuple[type[Warning], ...] = Warning,
                      message: str = "") -> Iterator[None]:
    """`warnings.filterwarnings(action, message, category)` for each of `categories` in force
    inside the block, and at its end taken out again, alone: a filter the caller had already
    set stays, one another block holds stays until that block ends too."""
    categories = categories if isinstance(categories, tuple) else (categories,)
    held = []
    try:
        with LOCK:
            for category in categories:
                before = list(warnings.filters)
                warnings.filterwarnings(action, message, category)
                entry = warnings.filters[0]
                if entry in before and entry not in HELD:  # the caller's own: never taken out
                    continue
                HELD[entry] = HELD.get(entry, 0) + 1
                held.append(entry)
        yield
    finally:
        with LOCK:
            for entry in held:
                HELD[entry] -= 1
                if not HELD[entry]:
                    del HELD[entry]
                    if entry in warnings.filters:
                        warnings.filters.remove(entry)
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
