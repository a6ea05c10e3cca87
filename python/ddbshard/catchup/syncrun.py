"""The sync loop: rounds of up to 100 keys, each read, planned, and written or listed.

A round reads the keys' current items from the source table (one BatchGetItem: 100 keys is its
limit), routes them, reads the target items the plans need (BatchGetItem again), and applies the
puts and deletes (BatchWriteItem, 25 at most per call). Target lines (`Target` in the keys file)
come in rounds of their own before any source key, so a copy that `diff` found unexpected is
deleted first and an item the source does produce is put after it.

Every key ends in exactly one tally: unchanged (nothing to write), synced (its writes applied),
failed (a read or a write still failing after the retries; the key goes to the failed-keys
file with the reason), and besides any of those in at most one of: unmatched (it matched no
target; under `unmatched = "reject"` it goes to the failed-keys file) and rejected (a target
could not take the item: it goes to the failed-keys file too).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ddbshard.catchup.changes import UNKNOWN
from ddbshard.catchup.dynamo import MAX_GET, Dynamo, Write
from ddbshard.catchup.keysfile import KeyEntry, entry_json
from ddbshard.catchup.routing import Router
from ddbshard.catchup.syncplan import (
    EntryPlan,
    decide,
    describe,
    plan_source,
    plan_target_line,
    reads,
)
from ddbshard.catchup.wire import canonical, item_size, write_units
from ddbshard.exceptions import UnmatchedError

__all__ = ["SyncRun", "Tally"]


@dataclass
class Tally:
    keys: int = 0
    read: int = 0  # source items found
    gone: int = 0  # source keys with no item any more
    put: int = 0  # put requests applied (or listed, in a dry run)
    deleted: int = 0  # delete requests applied (or listed)
    unchanged: int = 0  # keys needing no write at all
    failed: int = 0
    rejected: int = 0  # keys some target refused (a missing key attribute, too large, ...)
    unmatched: int = 0  # keys matching no target (never also counted as rejected)
    per_table: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, table: str, what: str) -> None:
        self.per_table.setdefault(table, Counter())[what] += 1


@dataclass
class SyncRun:
    router: Router
    dynamo: Dynamo
    source_table: str | None  # None: the items come with the entries (incremental export)
    source_key: tuple[str, ...] = ()
    dry_run: bool = False
    out: TextIO = sys.stdout
    tally: Tally = field(default_factory=Tally)
    failed_lines: list[dict[str, Any]] = field(default_factory=list)

    def run(self, entries: Iterable[KeyEntry]) -> Tally:
        for batch in _chunks(entries, MAX_GET):
            self._round(batch)
        return self.tally

    def _round(self, batch: list[KeyEntry]) -> None:
        plans = [self._plan(i, e, current) for i, (e, current) in enumerate(self._current(batch))]
        wanted = [r for p in plans if p.problem is None for r in reads(self.router, p)]
        actual, unread = self.dynamo.get(wanted)
        unread_ids = {(table, canonical(key)) for table, key, _ in unread}
        writes: list[Write] = []
        for p in plans:
            if p.problem is not None:
                continue
            decide(self.router, p, actual, unread_ids)
            for t, item, key in p.puts:
                units = _units(item)
                writes.append(Write(self.router.targets[t].table, item, key, units, p.index))
            for t, key, units in p.deletes:
                writes.append(Write(self.router.targets[t].table, None, key, units, p.index))
        failed: dict[int, str] = {}
        if self.dry_run:
            self._list(plans)
        else:
            for w, reason in self.dynamo.write(writes):
                failed.setdefault(w.tag, f"{w.table}: {reason}")
        for p in plans:
            self._settle(p, failed.get(p.index))

    def _current(self, batch: list[KeyEntry]) -> Iterator[tuple[KeyEntry, Any]]:
        """Each entry with its source item now: a dict, None (gone), or a str (cannot say)."""
        if self.source_table is None:
            for e in batch:
                if e.target is not None:
                    yield e, None
                elif e.new is UNKNOWN:
                    yield e, "the export's NewImage for this key is not valid DynamoDB JSON"
                else:
                    yield e, e.new
            return
        table = self.source_table
        names = set(self.source_key)
        wanted = [(table, e.keys) for e in batch if e.target is None and set(e.keys) == names]
        found, unread = self.dynamo.get(wanted)
        why = {canonical(key): reason for _, key, reason in unread}
        for e in batch:
            if e.target is not None:
                yield e, None
            elif set(e.keys) != names:
                have = ", ".join(sorted(e.keys))
                yield e, f"Keys name {have}, but {table}'s key is {', '.join(self.source_key)}"
            elif e.key_id in why:
                yield e, f"{table}: {why[e.key_id]}"
            else:
                yield e, found.get((table, e.key_id))

    def _plan(self, index: int, entry: KeyEntry, current: Any) -> EntryPlan:
        if entry.target is not None:
            return plan_target_line(self.router, index, entry)
        if isinstance(current, str):
            return EntryPlan(index, entry, problem=current)
        plan = plan_source(self.router, index, entry, current)
        for r in plan.rejects:
            if r.reason == "unmatched" and self.router.policy == "error":
                raise UnmatchedError(
                    f"{entry.where or json.dumps(entry.keys)}: the item matches no target "
                    '(unmatched = "error"); keys before it have been synced'
                )
        return plan

    def _list(self, plans: list[EntryPlan]) -> None:
        for p in plans:
            why = describe(p)
            for t, _, key in p.puts:
                self._print("put", self.router.targets[t].table, key, why)
            for t, key, _ in p.deletes:
                self._print("delete", self.router.targets[t].table, key, why)

    def _print(self, op: str, table: str, key: dict[str, Any], why: str) -> None:
        text = json.dumps(key, ensure_ascii=False, separators=(",", ":"))
        print(f"{op:<6} {table} {text}  ({why})", file=self.out)

    def _settle(self, p: EntryPlan, write_failure: str | None) -> None:
        tally = self.tally
        tally.keys += 1
        if p.entry.target is None and p.problem is None:
            if p.exists:
                tally.read += 1
            else:
                tally.gone += 1
        problem = p.problem or write_failure
        if problem is not None:
            tally.failed += 1
            self.failed_lines.append(entry_json(p.entry, reason=problem))
            return
        for t, _, _ in p.puts:
            tally.put += 1
            tally.count(self.router.targets[t].table, "put")
        for t, _, _ in p.deletes:
            tally.deleted += 1
            tally.count(self.router.targets[t].table, "deleted")
        for t in p.unchanged:
            tally.count(self.router.targets[t].table, "unchanged")
        if not p.puts and not p.deletes:
            tally.unchanged += 1
        # Each key is counted once: matching no target and refused by a target are two
        # different tallies, though under unmatched = "reject" both list the key.
        unmatched = [r for r in p.rejects if r.reason == "unmatched"]
        refused = [r for r in p.rejects if r.reason != "unmatched"]
        if unmatched:
            tally.unmatched += 1
        elif refused:
            tally.rejected += 1
        listed = refused + (unmatched if self.router.policy == "reject" else [])
        if listed:
            reason = "; ".join(
                f"{r.target}: {r.reason}" if r.target else "matches no target" for r in listed
            )
            self.failed_lines.append(entry_json(p.entry, reason=f"rejected: {reason}"))


def _units(item: dict[str, Any]) -> int:
    return write_units(item_size(item))


def _chunks(entries: Iterable[KeyEntry], size: int) -> Iterator[list[KeyEntry]]:
    """Rounds of up to `size` entries; target lines never share a round with source keys, since
    a round reads everything before it writes: a source key's put planned beside a target
    line's delete of the same item would be planned as "unchanged" and then deleted."""
    batch: list[KeyEntry] = []
    for e in entries:
        if batch and (len(batch) == size or (batch[-1].target is None) != (e.target is None)):
            yield batch
            batch = []
        batch.append(e)
    if batch:
        yield batch
