"""Warnings that point at the user's line, not at lstmkit's or torch's."""

from __future__ import annotations

import os
import sys
import warnings

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
