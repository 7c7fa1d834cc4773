"""Warnings that point at the user's line, not at lstmkit's."""

from __future__ import annotations

import os
import sys
import warnings

PACKAGE_ROOT = os.path.dirname(os.path.dirname(__file__)) + os.sep


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn with the location of the first frame outside the lstmkit package."""
    frame, stacklevel = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_ROOT):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)
