"""A model in evaluation mode for a while, given back in the modes it was in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

# Models inside `evaluating` now, by id: how many blocks hold each, and the modes the first found.
HELD: dict[int, tuple[int, list[tuple[nn.Module, bool]]]] = {}
HELD_LOCK = threading.Lock()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in evaluation mode (no dropout) inside the block, and every submodule back in its
    own mode after it: a caller's model in training mode stays so (sampling from one left it in
    evaluation mode), and one with some parts frozen in evaluation mode keeps them so.

    Blocks on one model from several threads at once share one hold: the first saves the modes,
    the last gives them back (each restoring its own left a model in training mode in
    evaluation mode, and ran another thread's call with dropout on). Training a model in one
    thread while another evaluates it still switches its dropout off for that time, as
    `model.eval()` would: evaluate a copy (`copy.deepcopy`) there."""
    key = id(model)
    with HELD_LOCK:
        holders, modes = HELD.get(key, (0, None))
        if modes is None:
            modes = [(module, module.training) for module in model.modules()]
        model.eval()
        HELD[key] = holders + 1, modes
    try:
        yield model
    finally:
        with HELD_LOCK:
            holders, modes = HELD.pop(key)
            if holders > 1:
                HELD[key] = holders - 1, modes
            else:
                for module, training in modes:
                    module.training = training
