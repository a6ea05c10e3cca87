"""Progress of a long job: a one-line bar on a terminal, a log line every 10 s otherwise.

The bar follows compressed bytes read (known for every source); items and the ETA come from
the manifest's totals when there is one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

BAR_WIDTH = 30


class Progress:
    def __init__(
        self,
        *,
        total_items: int | None,
        total_bytes: int,
        enabled: bool = True,
        note: Callable[[], str] | None = None,
    ) -> None:
        self.total_items = total_items
        self.note = note  # more to show (a live scan's pages and read units)
        self.total_bytes = total_bytes
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.items = 0
        self.bytes = 0
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, items: int, more_bytes: int) -> None:
        self.items = items
        self.bytes += more_bytes
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        self._show(now, end="\r" if self.tty else "\n")

    def _show(self, now: float, end: str) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.items / elapsed
        parts = []
        if self.tty and self.total_bytes:
            done = min(1.0, self.bytes / self.total_bytes)
            filled = int(done * BAR_WIDTH)
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        parts.append(f"{self.items:,} items")
        if self.total_items:
            parts[-1] += f" / {self.total_items:,} ({100 * self.items / self.total_items:.0f}%)"
        parts.append(f"{self.bytes / 2**20:,.0f} / {self.total_bytes / 2**20:,.0f} MiB")
        parts.append(f"{rate:,.0f} items/s")
        if self.note is not None:
            parts.append(self.note())
        if self.total_bytes and self.bytes:
            left = elapsed * (self.total_bytes - self.bytes) / self.bytes
            parts.append(f"ETA {left:,.0f} s")
        print("  ".join(parts), end=end, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty and self.last:
            print(file=sys.stderr)
