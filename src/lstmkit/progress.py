"""A one-line progress report on stderr: rewritten in place on a terminal, else a line now and then."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports `label`, the step, named values and steps/s, at most every `interval` seconds
    (on a terminal) or every `quiet_interval` seconds (in a log). A resumed run passes the step
    it starts from as `first_step`, so steps/s counts only the steps of this process; `unit`
    names what is counted ("step", "epoch")."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 interval: float = 0.2, quiet_interval: float = 30.0, first_step: int = 0,
                 unit: str = "step") -> None:
        self.label, self.total, self.first_step, self.unit = label, total, first_step, unit
        self.stream = sys.stderr if stream is None else stream
        self.terminal = self.stream.isatty()
        self.interval = interval if self.terminal else quiet_interval
        self.start = self.last = time.perf_counter()
        self.line = ""

    def update(self, step: int, **values: float) -> None:
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.last = now
        self.show(step, values, now)

    def show(self, step: int, values: dict[str, float], now: float) -> None:
        rate = (step - self.first_step) / max(now - self.start, 1e-9)
        total = f"/{self.total}" if self.total else ""
        shown = " ".join(f"{name} {value:.4g}" for name, value in values.items())
        self.line = f"{self.label}: {self.unit} {step}{total} {shown} {rate:.1f} {self.unit}s/s {now - self.start:.0f}s"
        end = "\r" if self.terminal else "\n"
        self.stream.write(self.line.ljust(100) + end if self.terminal else self.line + end)
        self.stream.flush()

    def close(self, step: int, **values: float) -> None:
        """The final line, always printed, ending the in-place line."""
        self.show(step, values, time.perf_counter())
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()
