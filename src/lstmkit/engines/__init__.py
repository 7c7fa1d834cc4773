"""Engines: how a cell runs over a sequence, one layer and direction at a time."""

from __future__ import annotations

from collections.abc import Callable

from lstmkit.engines.base import LayerRun
from lstmkit.engines.reference import run_reference

ENGINES: dict[str, Callable[..., LayerRun]] = {"reference": run_reference}
ENGINE_CHOICES = ("auto", *ENGINES)


def resolve_engine(engine: str) -> str:
    """The engine that `engine` names; "auto" picks the fastest one that applies."""
    if engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")
    return "reference" if engine == "auto" else engine


__all__ = ["ENGINES", "ENGINE_CHOICES", "LayerRun", "resolve_engine", "run_reference"]
