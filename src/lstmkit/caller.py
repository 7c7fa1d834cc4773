"""Warnings that point at the user's line, not at lstmkit's or torch's."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Iterator

import torch

LIBRARY_ROOTS = (
    os.path.dirname(__file__) + os.sep,  # lstmkit
    os.path.dirname(torch.__file__) + os.sep,  # torch, e.g. nn.Module.__call__ between user and layer
)


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with the location of the first frame outside lstmkit and torch."""
    frame, stacklevel = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(LIBRARY_ROOTS):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)


# lstmkit's blocks that change the warning filters, one at a time in the process.
WARNING_FILTERS = threading.RLock()


@contextlib.contextmanager
def warnings_caught(record: bool = False) -> Iterator[list[warnings.WarningMessage] | None]:
    """`warnings.catch_warnings(record=record)`, lstmkit's blocks one at a time in the process.
    Python's (before 3.14) saves the process's filters as the block begins and puts them back as
    it ends: two blocks from threads at once put back each other's, and left a filter of one of
    them in place for good (pandas' ParserWarning as an error: a user's read_csv raised it
    afterwards)."""
    with WARNING_FILTERS, warnings.catch_warnings(record=record) as said:
        yield said
