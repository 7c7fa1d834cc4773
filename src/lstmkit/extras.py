"""The pip extras of the pipelines, and the one line that says which to install.

`pip install lstmkit` brings the layers alone (torch, numpy, safetensors). A pipeline whose
libraries are missing stops before it starts, with one line naming the pip command:

    lstmkit forecast needs the forecast extra (missing: pandas): pip install 'lstmkit[forecast]'

The CLI checks the extra of a command before running it; a module that needs an extra wraps
its imports in `with extra_imports(extra, __name__):`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

# The modules each extra of pyproject.toml brings (those extras whose libraries lstmkit imports).
# tqdm draws the training core's progress bar on a terminal (in a log it writes plain lines, and
# where tqdm is missing it writes them on a terminal too, so a layer user's script can train).
EXTRAS: dict[str, tuple[str, ...]] = {
    "gpu": ("triton",),
    "tasks": ("matplotlib", "tqdm"),
    "lm": ("tqdm",),
    "forecast": ("pandas", "matplotlib", "statsforecast", "tqdm"),
    "speech": ("soundfile", "librosa", "jiwer", "matplotlib", "tqdm"),
    "translate": ("sentencepiece", "sacrebleu", "matplotlib", "tqdm"),
}


class MissingExtra(ImportError):
    """An extra's libraries are not installed; the message is the one line to show."""


def require_extra(extra: str, user: str) -> None:
    """Raise MissingExtra, naming `user` (a command or module) and the pip command, unless every
    library of `extra` is installed."""
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {', '.join(EXTRAS)}, got {extra!r}")
    missing = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtra(f"{user} needs the {extra} extra (missing: {', '.join(missing)}): "
                           f"pip install 'lstmkit[{extra}]'")


@contextmanager
def extra_imports(extra: str, user: str) -> Iterator[None]:
    """The imports in this block need `extra`: they run only once require_extra has passed. (A
    block rather than a call, so that the imports stay at the top of the module.)"""
    require_extra(extra, user)
    yield
