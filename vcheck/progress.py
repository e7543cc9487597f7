"""Progress lines for long passes, throttled so CI logs stay short."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def default_interval() -> float:
    """Seconds between progress lines: 2 on a terminal, 30 in a log (CI keeps a few lines)."""
    stream = sys.__stdout__
    return 2.0 if stream is not None and stream.isatty() else 30.0


class Progress:
    """Calls ``write(line)`` at most every ``interval`` seconds (default
    :func:`default_interval`), plus once at the end.

    Example:
        >>> p = Progress("predict fmnist_test", total=2, write=print, interval=0)
        >>> p.update(1); p.update(1)  # doctest: +ELLIPSIS
        predict fmnist_test: 1/2 (50%) ...
        predict fmnist_test: 2/2 (100%) ...
    """

    def __init__(
        self,
        label: str,
        total: int,
        write: Callable[[str], None],
        interval: float | None = None,
        unit: str = "images",
    ) -> None:
        self.label, self.total, self.write = label, total, write
        self.interval = default_interval() if interval is None else interval
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self._last = -float("inf")

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            rate = self.done / max(now - self.start, 1e-9)
            pct = 100 * self.done / max(self.total, 1)
            speed = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
            self.write(f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {speed} {self.unit}/s")
