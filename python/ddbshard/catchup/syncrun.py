"""The sync loop: rounds of up to 100 keys, each read, planned, and written or listed.

A round reads the keys' current items from the source table (one BatchGetItem: 100 keys is its
limit), routes them, reads the target items the plans need (BatchGetItem again), and applies the
puts and deletes (BatchWriteItem, 25 at most per call). Target lines (`Target` in the keys file)
come in rounds of their own before any source key, so a copy that `diff` found unexpected is
deleted first and an item the source does produce is put after it.

Rounds run `concurrency` at a time on a thread pool (one after another when it is 1). A round
holds the target items it reads in a `_Gate` until its writes are applied, and rounds take
their items in input order, so two rounds touching one item (a move into another key's old
copy, a key given twice) run as one after another would; the caller's thread settles the
rounds' tallies, failed keys and dry-run listing in input order, so the output does not
depend on `concurrency`.

Every key ends in exactly one tally: unchanged (nothing to write), synced (its writes applied),
failed (a read or a write still failing after the retries; the key goes to the failed-keys
file with the reason), and besides any of those in at most one of: unmatched (it matched no
target; under `unmatched = "reject"` it goes to the failed-keys file) and rejected (a target
could not take the item: it goes to the failed-keys file too).
"""

from __future__ import annotations

import gc
import json
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from ddbshard.catchup.changes import UNKNOWN
from ddbshard.catchup.dynamo import MAX_GET, Dynamo, Write
from ddbshard.catchup.keysfile import KeyEntry, entry_json
from ddbshard.catchup.routing import Router
from ddbshard.catchup.syncplan import (
    EntryPlan,
    Routes,
    decide,
    describe,
    plan_source,
    plan_target_line,
    reads,
    route_round,
)
from ddbshard.catchup.wire import canonical, item_size, write_units
from ddbshard.exceptions import ConfigError, UnmatchedError

__all__ = ["SyncRun", "Tally", "check_target_tables"]


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
        counts = self.per_table.get(table)
        if counts is None:  # not setdefault: it would build a Counter for every key counted
            counts = self.per_table[table] = Counter()
        counts[what] += 1


@dataclass
class _Done:
    """What one round did, for the caller's thread to settle."""

    seq: int  # the round's place in the input
    plans: list[EntryPlan] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # plan index -> write failure
    unmatched: UnmatchedError | None = None  # planning stopped at this key (unmatched = "error")
    skipped: bool = False  # stopped before it wrote anything: nothing to settle


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
    concurrency: int = 16  # batch calls in flight at once; 1: one round after another

    def run(self, entries: Iterable[KeyEntry]) -> Tally:
        """Syncs the entries; the tally is settled in input order on this thread.

        With `concurrency` > 1 up to that many rounds run at once on a thread pool (so that
        many calls are in flight: a round's own calls go one after another), and as many
        again wait their turn, so a slow round does not leave the others idle. On an
        exception here (Ctrl-C) or from a round, nothing new starts, the rounds under way
        finish (their unsent calls given back as failed), the finished ones are settled, and
        the exception goes on.
        """
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        with _collector_quieted():
            if self.concurrency == 1:
                self._one_by_one(entries)
            else:
                self._concurrently(entries)
        return self.tally

    def _one_by_one(self, entries: Iterable[KeyEntry]) -> None:
        gate = _Gate()
        for seq, batch in enumerate(_chunks(entries, MAX_GET)):
            done = self._round(gate, seq, batch)
            self._settle_round(done)
            if done.unmatched is not None:
                raise UnmatchedError(f"{done.unmatched}; keys before it have been synced")

    def _concurrently(self, entries: Iterable[KeyEntry]) -> None:
        if self.dynamo.slots is None:
            self.dynamo.limit(self.concurrency)
        gate = _Gate()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ddbshard-sync")
        waiting: deque[Future[_Done]] = deque()
        window = 2 * self.concurrency
        unmatched: UnmatchedError | None = None
        after = 0  # keys after the unmatched one that rounds already under way synced
        try:
            targets = True
            for seq, batch in enumerate(_chunks(entries, MAX_GET)):
                if targets and batch[0].target is None:
                    # `Target` lines are all applied before any source key is read.
                    targets = False
                    while waiting and unmatched is None:
                        unmatched = self._settle_next(waiting, gate)
                while len(waiting) >= window and unmatched is None:
                    unmatched = self._settle_next(waiting, gate)
                if unmatched is not None:
                    break
                waiting.append(pool.submit(self._round, gate, seq, batch))
            while waiting:
                if unmatched is None:
                    unmatched = self._settle_next(waiting, gate)
                else:
                    done = waiting[0].result()  # leaves the queue only once it is settled
                    waiting.popleft()
                    if not done.skipped:
                        after += len(done.plans)
                        self._settle_round(done)
        except BaseException:
            gate.stop(-1)
            self.dynamo.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._settle_finished(waiting)
            raise
        finally:
            pool.shutdown(wait=True)
        if unmatched is not None:
            but = f", and {after:,} keys after it, in rounds already under way" if after else ""
            raise UnmatchedError(f"{unmatched}; keys before it have been synced{but}")

    def _settle_next(self, waiting: deque[Future[_Done]], gate: _Gate) -> UnmatchedError | None:
        # The round leaves the queue only once its result is in: a Ctrl-C during the wait
        # must still find it there, to count what it wrote.
        done = waiting[0].result()
        waiting.popleft()
        self._settle_round(done)
        if done.unmatched is not None:
            gate.stop(done.seq)
        return done.unmatched

    def _settle_finished(self, waiting: deque[Future[_Done]]) -> None:
        """After a stop: settles, in order, the rounds that ran to their end."""
        for f in waiting:
            if f.cancelled() or f.exception() is not None:
                continue
            done = f.result()
            if not done.skipped:
                self._settle_round(done)

    def _settle_round(self, done: _Done) -> None:
        if self.dry_run:
            self._list(done.plans)
        for p in done.plans:
            self._settle(p, done.failed.get(p.index))

    def _round(self, gate: _Gate, seq: int, batch: list[KeyEntry]) -> _Done:
        """Reads, plans and writes one round (on a pool thread: it settles nothing itself).

        The round holds its source keys, then the target items it reads, in `gate` from before
        it reads them until its writes are applied, so what it read is still there when it
        writes; of two rounds that touch one item the earlier one in the input goes first.
        """
        done = _Done(seq=seq)
        steps = 0  # the gate's steps this round has taken its turn at
        try:
            source = self.source_table or ""
            keys = {(source, e.key_id) for e in batch if e.target is None}
            steps = 1
            if not gate.take(SOURCE, seq, keys):
                return _Done(seq=seq, skipped=True)
            pairs = list(self._current(batch))
            routes = route_round(self.router, pairs)
            for i, (e, current) in enumerate(pairs):
                try:
                    done.plans.append(self._plan(i, e, current, routes[i]))
                except UnmatchedError as err:
                    done.unmatched = err
                    break
            if done.unmatched is not None:
                gate.stop(seq)  # the rounds after this one write nothing more
            steps = 2
            if not gate.take(TARGETS, seq, self._touches(done.plans)):
                return _Done(seq=seq, skipped=True)
            self._apply(done)
            return done
        except BaseException:
            # The run ends with this error (the caller meets it in its turn): stop now.
            gate.stop(-1)
            self.dynamo.stopping.set()
            raise
        finally:
            # The next round's turn must come at every step, whatever became of this one.
            for step in range(steps, 2):
                gate.take(step, seq, set())
            gate.leave(seq)

    def _touches(self, plans: list[EntryPlan]) -> set[tuple[str, str]]:
        """The target items the plans read and may write (the source keys are held already)."""
        touched: set[tuple[str, str]] = set()
        for p in plans:
            if p.problem is None:
                touched.update((table, ident) for table, _, ident in reads(self.router, p))
        return touched

    def _apply(self, done: _Done) -> None:
        plans = done.plans
        wanted = [r for p in plans if p.problem is None for r in reads(self.router, p)]
        actual, unread = self.dynamo.get([(t, k) for t, k, _ in wanted], [i for *_, i in wanted])
        unread_ids = {(table, canonical(key)) for table, key, _ in unread}
        writes: list[Write] = []
        # Write units are estimated for the --max-wcu budget alone: without one, sizing every
        # item (a walk over all its values) would be a seventh of sync's CPU for nothing.
        sized = self.dynamo.budget is not None
        for p in plans:
            if p.problem is not None:
                continue
            decide(self.router, p, actual, unread_ids, sized=sized)
            for t, item, key, ident in p.puts:
                units = _units(item) if sized else 0
                table = self.router.targets[t].table
                writes.append(Write(table, item, key, units, p.index, key_id=ident))
            for t, key, units, ident in p.deletes:
                table = self.router.targets[t].table
                writes.append(Write(table, None, key, units, p.index, key_id=ident))
        if not self.dry_run:
            for w, reason in self.dynamo.write(writes):
                done.failed.setdefault(w.tag, f"{w.table}: {reason}")

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
        asked = [e for e in batch if e.target is None and set(e.keys) == names]
        found, unread = self.dynamo.get([(table, e.keys) for e in asked], [e.key_id for e in asked])
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

    def _plan(self, index: int, entry: KeyEntry, current: Any, routes: Routes) -> EntryPlan:
        if entry.target is not None:
            return plan_target_line(self.router, index, entry)
        if isinstance(current, str):
            return EntryPlan(index, entry, problem=current)
        plan = plan_source(self.router, index, entry, current, routes)
        for r in plan.rejects:
            if r.reason == "unmatched" and self.router.policy == "error":
                raise UnmatchedError(
                    f"{entry.where or json.dumps(entry.keys)}: the item matches no target "
                    '(unmatched = "error")'
                )
        return plan

    def _list(self, plans: list[EntryPlan]) -> None:
        for p in plans:
            why = describe(p)
            for t, _, key, _ in p.puts:
                self._print("put", self.router.targets[t].table, key, why)
            for t, key, _, _ in p.deletes:
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
        for t, *_ in p.puts:
            tally.put += 1
            tally.count(self.router.targets[t].table, "put")
        for t, *_ in p.deletes:
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


class _Gate:
    """Which items the rounds under way hold, and whose turn it is to take some.

    A round takes items in two steps: its source keys before it reads them (SOURCE), then the
    target items its plans touch before it reads and writes them (TARGETS). At each step the
    rounds take their turn in input order (`take` waits for the round before to have taken
    its own), all at once, and then wait only for earlier rounds holding one of the same items
    to `leave`. The earliest round never waits for anything, so there is no deadlock; two
    rounds that touch one item run in input order, as one after another would; and a round
    reads a source key only after an earlier round holding it has written, so it never plans
    from an older item than the one an earlier round wrote.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._turn = [0, 0]  # per step: the next round whose turn it is
        self._held: dict[int, set[tuple[str, str]]] = {}
        self._stop_after = float("inf")

    def take(self, step: int, seq: int, items: set[tuple[str, str]]) -> bool:
        """Waits until round `seq` may touch `items` too; False: the run stopped before it."""
        with self._cond:
            self._cond.wait_for(lambda: self._turn[step] >= seq)
            self._turn[step] = seq + 1
            self._cond.notify_all()
            if seq > self._stop_after:
                return False
            before = [s for s, held in self._held.items() if s < seq and not held.isdisjoint(items)]
            self._held.setdefault(seq, set()).update(items)
            self._cond.wait_for(
                lambda: seq > self._stop_after or all(s not in self._held for s in before)
            )
            return seq <= self._stop_after

    def leave(self, seq: int) -> None:
        with self._cond:
            self._held.pop(seq, None)
            self._cond.notify_all()

    def stop(self, after: int) -> None:
        """Rounds after `after` that have not begun to write stop (-1: every round)."""
        with self._cond:
            self._stop_after = min(self._stop_after, after)
            self._cond.notify_all()


SOURCE, TARGETS = 0, 1  # _Gate's steps


# Container objects made (net of those freed) between the collector's young passes during a
# run; Python's default is 700.
_YOUNG_THRESHOLD = 50_000


@contextmanager
def _collector_quieted() -> Iterator[None]:
    """Keeps what is alive when the run starts (botocore's API models, the config, the entries
    of an export) out of the cyclic garbage collector's walks until it ends, and lets the
    collector pass over the young objects less often.

    A round allocates thousands of dicts, so the collector runs all the time, and each of its
    full passes walked every one of those objects again: about a tenth of sync's CPU time
    per key, which bounds how fast rounds in flight go. Objects the run makes are collected as
    ever, and frozen ones that fall out of use are freed by their reference counts; only a
    cycle among them waits for the run's end, when they all go back to the collector.

    With 16 rounds in flight, their tens of thousands of objects are alive at every young pass
    (every 700 objects kept) and were walked again and again: 0.2 s of CPU in 20,000 keys,
    three times what one round after another spends there. At 50,000 the collector passes
    about once in 20,000 keys; the run makes few cycles (a few hundred in 20,000 keys), so
    what waits longer for it is small."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], _YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def check_target_tables(router: Router, dynamo: Dynamo, config: str) -> None:
    """Every target table has the key the config declares (a wrong one would fail every
    write): ConfigError before the first write."""
    for t in router.targets:
        actual = dynamo.key_schema(t.table)
        declared = tuple(zip(t.key, t.types, strict=True))
        if actual != declared:
            raise ConfigError(
                f"{config}: target {t.name!r}: table {t.table} has the key {_schema(actual)}, "
                f"the config declares {_schema(declared)}"
            )


def _schema(key: tuple[tuple[str, str], ...]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in key) + ")"


def _units(item: dict[str, Any]) -> int:
    return write_units(item_size(item))


def _chunks(entries: Iterable[KeyEntry], size: int) -> Iterator[list[KeyEntry]]:
    """Rounds of up to `size` entries; target lines never share a round with source keys, since
    a round reads everything before it writes: a source key's put planned beside a target
    line's delete of the same item would be planned as "unchanged" and then deleted.

    Nor does one round hold a key twice (diff lists a source item missing from two targets in
    both targets' files): both would be planned from the same reads and written twice; the
    second goes to the next round, which reads what the first wrote."""
    batch: list[KeyEntry] = []
    held: set[tuple[str | None, str]] = set()
    for e in entries:
        ident = (e.target, e.key_id)
        if batch and (
            len(batch) == size or (batch[-1].target is None) != (e.target is None) or ident in held
        ):
            yield batch
            batch = []
            held = set()
        batch.append(e)
        held.add(ident)
    if batch:
        yield batch
