"""How the `lstmkit` command meets SIGTERM and Ctrl-C: as an interrupt that keeps what a run
wrote, and, where the process is blocked inside torch, as the end it would be without lstmkit."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from lstmkit.interrupts import HANDLED, count_handled

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

    def terminated(signal_number, frame) -> None:
        count_handled(signal_number)
        raise Terminated

    earlier, earlier_interrupt = signal.signal(signal.SIGTERM, terminated), signal.getsignal(signal.SIGINT)
    try:
        with ended_if_unheard():
            yield
    finally:
        signal.signal(signal.SIGTERM, earlier)
        signal.signal(signal.SIGINT, earlier_interrupt)


# The watch's pipe while it runs: a child forked meanwhile closes its copies (`forked`).
WATCH_PIPE: list[int] = []
STOP_WATCH = b"\0"  # no signal's number


@contextlib.contextmanager
def ended_if_unheard() -> Iterator[None]:
    """End the process TERM_GRACE_SECONDS after a SIGTERM for which no handler of lstmkit's has
    run by then (`lstmkit.interrupts.HANDLED`): a process blocked inside torch ignored SIGTERM,
    where the signal's default, which lstmkit's handler replaces, would have ended it, and
    torchrun stopped it only with SIGKILL, 30 s later. The system writes each signal's number to
    Python's wakeup file as it arrives, whatever the main thread is doing; a thread of this block
    reads it there, and passes it on to the wakeup file set before (an asyncio loop's). Not on
    Windows, where another process's SIGTERM is no signal."""
    if os.name == "nt":
        yield
        return
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    earlier = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
    WATCH_PIPE[:] = [reader, writer]

    def watch() -> None:
        received, handled_before = 0, HANDLED.get(signal.SIGTERM, 0)
        while (numbers := os.read(reader, 64)) and STOP_WATCH not in numbers:
            if earlier >= 0:
                with contextlib.suppress(OSError):
                    os.write(earlier, numbers)
            received += numbers.count(signal.SIGTERM)
            deadline = time.monotonic() + TERM_GRACE_SECONDS
            while unheard(received, handled_before) and time.monotonic() < deadline:
                time.sleep(0.05)
            if unheard(received, handled_before):
                if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone speaks
                    # torchrun's SIGTERM, where another process ended (a bad file of its own, at start):
                    # read as a user's, it named no cause
                    peers = int(os.environ.get("WORLD_SIZE", "1")) > 1
                    sys.stderr.write(f"lstmkit: interrupted (SIGTERM), inside a call into torch that had not "
                                     f"returned {TERM_GRACE_SECONDS:g} s later" + (
                                         "; torchrun stops every process when one ends: another process's reason, "
                                         "where it gave one, is above" if peers else "") + "\n")
                    sys.stderr.flush()
                os._exit(143)

    watcher = threading.Thread(target=watch, name="lstmkit SIGTERM watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        if WATCH_PIPE == [reader, writer]:  # not in a child forked meanwhile, which let them go (`forked`)
            signal.set_wakeup_fd(earlier)
            os.write(writer, STOP_WATCH)  # not the file's end, which a child forked meanwhile would hold off
            watcher.join()
            WATCH_PIPE.clear()
            os.close(writer)
            os.close(reader)


def unheard(received: int, handled_before: int) -> bool:
    """Whether fewer of the `received` SIGTERMs have met a handler of lstmkit's than came."""
    return HANDLED.get(signal.SIGTERM, 0) - handled_before < received


def forked() -> None:
    """In a child forked while the watch runs: none of it is the child's (its SIGTERM would
    end the parent, and its copy of the pipe is the parent's)."""
    if not WATCH_PIPE:
        return
    with contextlib.suppress(ValueError):  # forked from another thread than the main one: none was set there
        signal.set_wakeup_fd(-1)
    for end in WATCH_PIPE:
        os.close(end)
    WATCH_PIPE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forked)


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
