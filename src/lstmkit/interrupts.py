"""Ctrl-C and SIGTERM while lstmkit writes: held back through a block that must end whole, and
counted as handled, so that the command's SIGTERM watch (`lstmkit.cli.signals`) can tell a
process that runs Python from one blocked inside torch."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# How many of each signal a handler of lstmkit's has run for, in this process (the main thread
# alone runs them; the watch reads the counts).
HANDLED: dict[int, int] = {}


def count_handled(number: int) -> None:
    """Note that a handler of lstmkit's ran for signal `number`: Python runs in the main thread."""
    HANDLED[number] = HANDLED.get(number, 0) + 1


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back while the block runs and delivered as it ends (the main
    thread only: another cannot set handlers). Held by handlers that note them, not by the
    thread's signal mask: the system hands a signal from another process to any thread that does
    not block it (torch's, tqdm's), and Python then ran the handler in the main thread, inside
    the block. A signal whose handler was set outside Python is left to it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def note(number: int, frame) -> None:
        count_handled(number)
        received.append(number)

    earlier: dict[int, object] = {}
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(number) is not None:
                earlier[number] = signal.signal(number, note)
        yield
    finally:  # also where a signal came between the two installs: what was installed is undone
        for number, handler in earlier.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(received):
            signal.raise_signal(number)
