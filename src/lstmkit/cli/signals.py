"""How the `lstmkit` command meets SIGTERM and Ctrl-C: as an interrupt that keeps what a run
wrote, and, where the process is blocked inside torch, as the end it would be without lstmkit."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

# How long after SIGTERM a process whose handler has not run is ended: the main thread is then
# blocked inside torch (a rendezvous or a collective waiting for a process that is gone), which
# runs no Python until it returns. Well under the 30 s torchrun waits before SIGKILL, and long
# enough for any one call of a training step to return.
TERM_GRACE_SECONDS = 5.0


class Terminated(KeyboardInterrupt):
    """SIGTERM, a scheduler's or torchrun's request to stop: met as Ctrl-C is, so that what a
    run wrote is kept and a checkpoint half written is removed, where the signal's default
    would kill the process mid-write without a word."""


@contextlib.contextmanager
def stopping_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated while the command runs (the main thread only: a command run
    from another thread keeps the default), or ends the process where that cannot happen in
    time (`ended_if_unheard`); Ctrl-C's handler is restored after it too, which
    `ignore_further_signals` may have changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard = threading.Event()

    def terminated(signal_number, frame) -> None:
        heard.set()
        raise Terminated

    earlier, earlier_interrupt = signal.signal(signal.SIGTERM, terminated), signal.getsignal(signal.SIGINT)
    try:
        with ended_if_unheard(heard):
            yield
    finally:
        signal.signal(signal.SIGTERM, earlier)
        signal.signal(signal.SIGINT, earlier_interrupt)


@contextlib.contextmanager
def ended_if_unheard(heard: threading.Event) -> Iterator[None]:
    """End the process TERM_GRACE_SECONDS after a SIGTERM whose handler has not run by then
    (`heard`): a process blocked inside torch ignored SIGTERM, where the signal's default, which
    lstmkit's handler replaces, would have ended it, and torchrun stopped it only with SIGKILL,
    30 s later. The system writes each signal's number to Python's wakeup file as it arrives,
    whatever the main thread is doing; a thread of this block reads it there."""
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    earlier = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)

    def watch() -> None:
        while received := os.read(reader, 64):
            if signal.SIGTERM in received and not heard.wait(TERM_GRACE_SECONDS):
                if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone speaks
                    sys.stderr.write(f"lstmkit: interrupted (SIGTERM), inside a call into torch that had not "
                                     f"returned {TERM_GRACE_SECONDS:g} s later\n")
                    sys.stderr.flush()
                os._exit(143)

    watcher = threading.Thread(target=watch, name="lstmkit SIGTERM watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(earlier)
        os.close(writer)  # the watch reads the end of the file, and returns
        watcher.join()
        os.close(reader)


def ignore_further_signals() -> None:
    """Ctrl-C and SIGTERM ignored from here on: torchrun may send a second while a process says
    why it stops, which then ended in a traceback."""
    on_interrupts(signal.SIG_IGN)


def on_interrupts(handler) -> None:
    """`handler` for Ctrl-C and SIGTERM (the main thread only: another cannot set one;
    `stopping_on_sigterm` restores both)."""
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, handler)
