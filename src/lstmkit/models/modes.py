"""A model in evaluation mode for a while, given back in the modes it was in."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

# The modules inside `evaluating` blocks now, by id: how many blocks hold each, and the mode the
# first of them found.
HELD: dict[int, tuple[int, bool]] = {}
HELD_LOCK = threading.Lock()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in evaluation mode (no dropout) inside the block, and every submodule back in its
    own mode after it: a caller's model in training mode stays so (sampling from one left it in
    evaluation mode), and one with some parts frozen in evaluation mode keeps them so.

    Blocks from several threads at once (on one model, or on a model and a part of it) share
    each module: the first block holding it saves its mode, the last gives it back (each
    restoring what it found left a model in training mode in evaluation mode, and switched
    dropout on under another thread's call). Training a model in one thread while another
    evaluates it still switches its dropout off for that time, as `model.eval()` would: evaluate
    a copy (`copy.deepcopy`) there."""
    modules = list(model.modules())
    held = []
    try:
        with HELD_LOCK:
            for module in modules:
                holders, training = HELD.get(id(module), (0, module.training))
                HELD[id(module)] = holders + 1, training
                held.append(module)
        model.eval()
        yield model
    finally:
        with HELD_LOCK:
            for module in held:
                holders, training = HELD.pop(id(module))
                if holders > 1:
                    HELD[id(module)] = holders - 1, training
                else:
                    module.training = training


def forked() -> None:
    """A child forked while another thread held the lock would wait for it for ever."""
    global HELD_LOCK
    HELD_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forked)
