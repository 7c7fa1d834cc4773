"""argparse types shared by the commands: each names what it expected and what it got."""

from __future__ import annotations

import argparse

from lstmkit.cells import CELLS


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def cell_list(text: str) -> list[str]:
    """argparse type: comma-separated cell names, each one lstmkit knows."""
    cells = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in cells if name not in CELLS]
    if unknown or not cells:
        raise argparse.ArgumentTypeError(
            f"expected cell names from {', '.join(CELLS)}, got {text!r}"
        )
    return cells
