"""Engines: how a cell runs over a sequence, one layer and direction at a time."""

from __future__ import annotations

from collections.abc import Callable

from lstmkit.cells import Cell
from lstmkit.engines.base import LayerRun
from lstmkit.engines.fused import run_fused
from lstmkit.engines.native import native_support_reason, run_native
from lstmkit.engines.reference import run_reference

LAYER_ENGINES: dict[str, Callable[..., LayerRun]] = {"reference": run_reference, "fused": run_fused}
ENGINE_CHOICES = ("auto", "native", "fused", "reference")


def resolve_engine(engine: object, cell: Cell) -> str:
    """The engine that `engine` names for `cell`; "auto" picks native where it applies, else fused."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")
    reason = native_support_reason(cell)
    if engine == "auto":
        return "fused" if reason else "native"
    if engine == "native" and reason:
        raise ValueError(f"engine='native' cannot run this layer: {reason}; use engine='fused'")
    return engine


__all__ = [
    "ENGINE_CHOICES",
    "LAYER_ENGINES",
    "LayerRun",
    "native_support_reason",
    "resolve_engine",
    "run_fused",
    "run_native",
    "run_reference",
]
