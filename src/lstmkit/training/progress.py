"""The progress of a training run, or of scoring and decoding, on stderr: a tqdm bar on a
terminal, a plain line now and then in a log. Both show the step, the named values, the
throughput and the time left."""

from __future__ import annotations

import contextlib
import sys
import time
import weakref
from collections.abc import Iterator
from typing import TextIO

# The bars drawn and not yet closed, for `bars_closed_on_failure`.
OPEN_BARS: weakref.WeakSet = weakref.WeakSet()


@contextlib.contextmanager
def bars_closed_on_failure() -> Iterator[None]:
    """Close the bars opened inside the block that an error or Ctrl-C leaves open, so that what
    is written next (a message, a traceback, a notebook's next output) starts on a line of its
    own rather than after the bar's text."""
    before = set(OPEN_BARS)
    try:
        yield
    except BaseException:
        for bar in set(OPEN_BARS) - before:
            bar.close()
            OPEN_BARS.discard(bar)
        raise


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def seconds_text(seconds: float) -> str:
    """Seconds for a run's last lines, to the millisecond below 1 s (a short run is not "0 s"),
    a tenth below 10: "0.034", "4.2", "42"."""
    if seconds < 1:
        return f"{seconds:.3f}"
    return f"{seconds:.1f}" if round(seconds, 1) < 10 else f"{seconds:.0f}"


def rate_text(per_second: float) -> str:
    """A rate as progress lines give it: whole numbers from 10 up ("9,700"), two significant
    digits below (a speech step of 120-second recordings showed "0 utterances/s" at 0.3)."""
    return f"{per_second:,.0f}" if per_second >= 9.5 else f"{per_second:.2g}"


class Progress:
    """Reports `label`, the step out of `total`, named values, items/s (`items_per_second`, by
    the caller's clock of training alone), steps/s by the wall clock (evaluations included) and
    the ETA: drawn from that rate, or the `seconds_left` the caller gives (a time budget's
    seconds of training), whichever ends first. A resumed run passes the step it starts from
    as `first_step`, so rates count this process's steps only. Work that is not training (scoring
    a text, decoding) gives `items_per_second` None: one rate, of `unit`s by the wall clock. On a
    terminal it draws a tqdm
    bar (the lm, tasks and forecast extras bring tqdm; without it the plain lines are written
    there too); elsewhere one line every `quiet_interval` seconds, and always a last one at
    `close`."""

    def __init__(self, label: str, total: int | None = None, first_step: int = 0, unit: str = "step",
                 item: str = "item", stream: TextIO | None = None, quiet_interval: float = 30.0) -> None:
        self.label, self.total, self.first_step, self.unit, self.item = label, total, first_step, unit, item
        self.stream = sys.stderr if stream is None else stream
        self.quiet_interval = quiet_interval
        self.start = self.last = time.perf_counter()
        terminal = getattr(self.stream, "isatty", None)  # a stream replaced by an object that only writes has none
        self.bar = self.make_bar() if terminal is not None and terminal() else None
        self.line = ""

    def make_bar(self):
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        bar = tqdm(total=self.total, initial=self.first_step, desc=self.label, unit=self.unit, file=self.stream,
                   dynamic_ncols=True, leave=True)
        OPEN_BARS.add(bar)
        return bar

    def update(self, step: int, items_per_second: float | None, total: int | None = None,
               seconds_left: float | None = None, **values: float) -> None:
        """After each step: `total` when it becomes known; `seconds_left` of a time budget."""
        if total is not None:
            self.total = total
        if self.bar is not None:
            if total is not None and self.bar.total != total:
                self.bar.total = total
            shown = {name: f"{value:.4g}" for name, value in values.items()}
            if items_per_second is not None:
                shown[f"{self.item}s/s"] = rate_text(items_per_second)
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(step - self.bar.n)
            return
        now = time.perf_counter()
        if now - self.last >= self.quiet_interval:
            self.last = now
            self.write(step, items_per_second, seconds_left, values, now)

    def write(self, step: int, items_per_second: float | None, seconds_left: float | None, values: dict[str, float],
              now: float) -> None:
        rate = (step - self.first_step) / max(now - self.start, 1e-9)
        within = bool(self.total) and step <= self.total  # a time budget's total is an estimate a run can pass
        if within and rate > 0:  # a step limit reached before the time budget is spent ends the run first
            by_steps = (self.total - step) / rate
            seconds_left = by_steps if seconds_left is None else min(seconds_left, by_steps)
        total = f"/{self.total}" if within else ""
        shown = "".join(f" {name} {value:.4g}" for name, value in values.items())
        eta = f" ETA {duration(seconds_left)}" if seconds_left is not None else ""
        if items_per_second is None:  # no training: the wall clock's rate alone
            speed = f"{rate_text(rate)} {self.unit}s/s"
        else:
            speed = (f"{rate_text(items_per_second)} {self.item}s/s in training, {rate:.2f} {self.unit}s/s with "
                     "evaluations")
        self.line = f"{self.label}: {self.unit} {step}{total}{shown} {speed}, elapsed {duration(now - self.start)}{eta}"
        self.stream.write(self.line + "\n")
        self.stream.flush()

    def close(self, step: int, items_per_second: float | None, **values: float) -> None:
        """The final report, always written."""
        if self.bar is not None:
            self.bar.set_postfix({name: f"{value:.4g}" for name, value in values.items()}, refresh=False)
            self.bar.update(step - self.bar.n)
            self.bar.close()
            OPEN_BARS.discard(self.bar)
            return
        self.write(step, items_per_second, 0.0, values, time.perf_counter())
