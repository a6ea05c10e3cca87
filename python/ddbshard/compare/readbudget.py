"""`--max-rcu`: one read-unit budget shared by the threads of a parallel Scan.

It is catchup's `Budget`, the token bucket sync shares between its threads for `--max-wcu`
(thread-safe, waits outside its lock, may go into debt), under the two names a Scan needs: a
Scan's cost is only known from its answer (ConsumedCapacity), so a page is paid for in two
steps. `reserve(estimate)` before the call waits until the bucket holds the estimate, and
`settle(estimate, actual)` after it charges the difference (or gives back an overestimate). An
estimate too low leaves the bucket in debt, which the next `reserve` waits out: the long-run
rate holds either way.
"""

from __future__ import annotations

from ddbshard.catchup.dynamo import Budget

__all__ = ["ReadBudget"]


class ReadBudget(Budget):
    def reserve(self, units: float) -> None:
        """Blocks until `units` may be spent (the bucket counts them as spent at once)."""
        self.take(units)

    def settle(self, reserved: float, consumed: float) -> None:
        """What a call really cost, against what `reserve` took for it."""
        self.charge(consumed - reserved)
