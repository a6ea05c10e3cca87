"""`--max-rcu`: one read-unit budget shared by the threads of a parallel Scan.

The bucket is catchup's `Budget` (a token bucket that may go into debt through `charge`); this
adds what several threads need: a lock around its accounting, and the wait done outside the
lock, so that a thread paying for its page does not stop the others from charging theirs.

A Scan's cost is only known from its answer (ConsumedCapacity), so a page is paid for in two
steps: `reserve(estimate)` before the call waits until the bucket holds the estimate, and
`settle(estimate, actual)` after it charges the difference. An estimate too low leaves the
bucket in debt, which the next `reserve` waits out: the long-run rate holds either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ddbshard.catchup.dynamo import Budget

__all__ = ["ReadBudget"]


class ReadBudget:
    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("the read budget must be positive")
        self._lock = threading.Lock()
        self._owed = 0.0  # what the bucket asked to wait, inside `reserve` (under the lock)
        self._bucket = Budget(per_second, clock=clock, sleep=self._note_wait)
        self._sleep = sleep
        self.rate = per_second
        self.waited = 0.0

    def _note_wait(self, seconds: float) -> None:
        self._owed += seconds

    def reserve(self, units: float) -> None:
        """Blocks until `units` may be spent (the bucket counts them as spent at once)."""
        with self._lock:
            self._owed = 0.0
            self._bucket.take(units)
            wait = self._owed
            self.waited += wait
        if wait > 0:
            self._sleep(wait)

    def settle(self, reserved: float, consumed: float) -> None:
        """What a call really cost, against what `reserve` took for it."""
        with self._lock:
            self._bucket.charge(consumed - reserved)
