"""Progress for long work: a bar on a terminal, a plain log line every ~10% otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, unit: str = "images", stream=None, enabled=True):
        self.total, self.label, self.unit = max(0, total), label, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self.start = time.perf_counter()
        self._next_log = 0.1

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled or self.total == 0:
            return
        frac = min(1.0, self.done / self.total)
        rate = self.done / max(1e-9, time.perf_counter() - self.start)
        if self.tty:
            bar = "#" * int(30 * frac)
            self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {self.unit} "
                              f"{rate:,.0f}/s")
            self.stream.flush()
        elif frac >= self._next_log or self.done == self.total:
            self.stream.write(f"{self.label}: {self.done}/{self.total} {self.unit} "
                              f"({frac:.0%}, {rate:,.0f} {self.unit}/s)\n")
            self.stream.flush()
            while self._next_log <= frac:
                self._next_log += 0.1

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
