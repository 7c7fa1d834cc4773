"""A model in evaluation mode for a while, given back in the modes it was in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in evaluation mode (no dropout) inside the block, and every submodule back in its
    own mode after it: a caller's model in training mode stays so (sampling from one left it in
    evaluation mode), and one with some parts frozen in evaluation mode keeps them so."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
