"""`replicate`'s loop: tail the source table's stream and apply each change to the targets with
sync's engine (SyncRun: routing, moves, deletes, retries, budget), one batch at a time.

Why it converges and survives kill -9:

- A batch is the records read (parents before children) up to `batch_records`. Each key's
  records in it collapse into one keys-file entry: the first record's OldImage (where copies
  may sit) and the last record's NewImage as the entry's `new` (no NewImage, a REMOVE: deleted
  everywhere). First and last in the stream's order, not by ApproximateCreationDateTime (which
  is approximate, and may be missing): the stream's order is the order of the writes. Batches
  apply one after another, so each key's changes land in stream order.
- The checkpoint moves only after SyncRun has applied the batch's writes (or listed them as
  failed in the failed-keys file). A kill between the two applies the batch again on restart;
  puts and deletes of whole items are idempotent, so that changes nothing.
- Streams without old images (KEYS_ONLY, NEW_IMAGE; OLD_IMAGE has no new one) make SyncRun read
  each key's current item from the source table, as `sync --keys` does.

The crash tests stop the process at the two steps of that commit path through
ddbshard.crashpoints: "applied" (the batch is written, the checkpoint not yet moved) and
"checkpointed".
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ddbshard import crashpoints
from ddbshard.catchup.changefiles import Malformed
from ddbshard.catchup.changes import Change
from ddbshard.catchup.keysfile import KeyEntry, write_lines
from ddbshard.catchup.routing import Router
from ddbshard.catchup.streams import StreamReader
from ddbshard.catchup.syncrun import SyncRun
from ddbshard.catchup.wire import canonical
from ddbshard.exceptions import InputError
from ddbshard.io.storage import describe_os_error, url_to_fs

__all__ = [
    "BATCH_RECORDS",
    "Counters",
    "Replicator",
    "unlocatable_note",
    "with_images",
]

# Records per batch: big enough that SyncRun's rounds of 100 keys stay full, small enough that
# a restart redoes little and the lag shown moves.
BATCH_RECORDS = 2000
SHOW_MALFORMED = 10


def with_images(view_type: str | None) -> bool:
    """Whether the stream's records carry both images, so no source read is needed."""
    return view_type == "NEW_AND_OLD_IMAGES"


@dataclass
class Counters:
    records: int = 0  # change records applied (malformed ones not included)
    malformed: int = 0  # records skipped, and records applied with an invalid image
    keys: int = 0  # key entries applied (a key's records of one batch are one entry)
    moves: int = 0  # keys whose item left one target for another (seen from the images)
    batches: int = 0
    newest: int | None = None  # ApproximateCreationDateTime of the newest applied record, µs


class Replicator:
    def __init__(
        self,
        reader: StreamReader,
        sync: SyncRun,
        router: Router,
        *,
        failed_keys: str,
        batch_records: int = BATCH_RECORDS,
        clock: Callable[[], float] = time.time,
        err: TextIO = sys.stderr,
    ) -> None:
        self.reader = reader
        self.sync = sync
        self.router = router
        self.failed_keys = failed_keys
        self.batch_records = batch_records
        self.clock = clock
        self.err = err
        self.counts = Counters()
        self.first_without_old: KeyEntry | None = None
        self._failed_written = 0
        self._earlier = earlier_failures(failed_keys)
        self._pass_newest: int | None = None
        self._empty_passes = 0  # passes in a row that found no record

    @property
    def earlier_failed(self) -> int:
        """Lines the failed-keys file held from earlier runs (kept in it)."""
        return len(self._earlier)

    def lag(self) -> float:
        """Seconds between now and the newest applied record; 0 once the stream is drained."""
        if self.reader.drained or self.counts.newest is None:
            return 0.0
        return max(0.0, self.clock() - self.counts.newest / 1e6)

    def caught_up(self, seconds: float) -> bool:
        """The last pass read every shard to its end or to now, and its newest record is at
        most `seconds` old (none at all: caught up whatever `seconds` says)."""
        if not self.reader.drained:
            return False
        if self._pass_newest is None:
            # GetRecords may answer an empty page before records that are there ("it might
            # take multiple calls", the API reference says): one empty pass is not proof of
            # an empty stream, two in a row are the best evidence a reader can get.
            return self._empty_passes >= 2
        return self.clock() - self._pass_newest / 1e6 <= seconds

    def run_pass(self, tick: Callable[[], None] = lambda: None) -> None:
        """One pass over the stream: every batch applied, then the checkpoint committed."""
        self._pass_newest = None
        records_before = self.counts.records
        batch: list[Change] = []
        for change in self.reader.read():
            if isinstance(change, Malformed):
                self._malformed(change)
                continue
            if change.problem is not None:
                # Applied all the same (its key is valid), but said and counted as `keys`
                # does: without its OldImage a copy under an old key may be left behind.
                self._malformed(
                    Malformed(change.where, f"{change.problem} (image left out, key kept)")
                )
            batch.append(change)
            if len(batch) >= self.batch_records:
                self._apply(batch)
                batch = []
                tick()
        # The last batch, or none: finished shards and skipped malformed records move the
        # checkpoint too.
        self._apply(batch)
        found = self.counts.records > records_before
        self._empty_passes = 0 if found else self._empty_passes + 1
        tick()

    def _apply(self, batch: list[Change]) -> None:
        progress = self.reader.progress()  # exactly the records yielded so far
        if batch:
            entries = _collapse(batch)
            self._count_moves(entries)
            # Target lines first: SyncRun runs them in rounds of their own, before the keys.
            self.sync.run([*self._passed_copies(batch, entries), *entries])
            crashpoints.reached("applied")
            if len(self.sync.failed_lines) > self._failed_written:
                # Before the checkpoint passes them: a failed key is in the file or redone.
                # An earlier run's lines stay: the checkpoint has passed those keys too.
                write_lines(self.failed_keys, [*self._earlier, *self.sync.failed_lines])
                self._failed_written = len(self.sync.failed_lines)
            self.counts.records += len(batch)
            self.counts.keys += len(entries)
            self.counts.batches += 1
            times = [c.t for c in batch if c.t is not None]
            if times:
                newest = max(times)
                self.counts.newest = max(newest, self.counts.newest or newest)
                self._pass_newest = max(newest, self._pass_newest or newest)
        self.reader.commit(progress)
        if batch:
            crashpoints.reached("checkpointed")

    def _passed_copies(self, batch: list[Change], entries: list[KeyEntry]) -> list[KeyEntry]:
        """`Target` lines for the copies a key's states inside the batch may have left.

        Collapsing a key's records to (first OldImage, last NewImage) is exact when the targets
        hold the first OldImage, which is so once every earlier batch is applied. But the
        targets may hold one of the states in between: a replay from the trim horizon starts
        before the export, whose items are some middle state of the batch. A copy of such a
        state under a key the final state does not use would be found by neither image; a
        Target line deletes it if it is there (one read when it is not).
        """
        final = {e.key_id: e.new for e in entries}
        out: dict[tuple[int, str], KeyEntry] = {}
        for change in batch:
            if not isinstance(change.new, dict) or change.new is final.get(change.key_id):
                continue
            last = final.get(change.key_id)
            keep = self.router.route(last).outputs if isinstance(last, dict) else {}
            for t, item in self.router.route(change.new).outputs.items():
                key = self.router.target_key(t, item)
                ident = canonical(key)
                if t in keep and canonical(self.router.target_key(t, keep[t])) == ident:
                    continue  # the final state's own copy: it is put, not deleted
                target = self.router.targets[t].name
                out.setdefault((t, ident), KeyEntry(key, ident, change.t, target=target))
        return list(out.values())

    def _count_moves(self, entries: list[KeyEntry]) -> None:
        for e in entries:
            if not isinstance(e.old, dict):
                if self.first_without_old is None and e.old is not None:
                    self.first_without_old = e
                continue
            before = set(self.router.route(e.old).outputs)
            after = set(self.router.route(e.new).outputs) if isinstance(e.new, dict) else set()
            if before - after and after - before:
                self.counts.moves += 1

    def _malformed(self, m: Malformed) -> None:
        self.counts.malformed += 1
        if self.counts.malformed <= SHOW_MALFORMED:
            print(f"ddbshard replicate: malformed record: {m.where}: {m.reason}", file=self.err)

    def status(self, elapsed: float) -> str:
        c, t = self.counts, self.sync.tally
        rate = c.records / max(elapsed, 1e-9)
        return (
            f"lag {self.lag():.1f} s, {c.records:,} records ({rate:,.0f}/s), put {t.put:,}, "
            # Every key in the failed-keys file (failed, or refused by a target) is a failure:
            # the count must match what the file lists. So it counts the lines written, not
            # the keys of a batch a Ctrl-C cut short (sync gives back their unsent calls as
            # failed; the checkpoint has not passed them, and the next run applies them).
            f"moves {c.moves:,}, deleted {t.deleted:,}, "
            f"failed {self._failed_written + c.malformed:,}"
        )


def _collapse(batch: list[Change]) -> list[KeyEntry]:
    """One entry per key of a batch: its first record's OldImage and its last record's
    NewImage, in stream order."""
    first: dict[str, Change] = {}
    last: dict[str, Change] = {}
    for change in batch:
        first.setdefault(change.key_id, change)
        last[change.key_id] = change
    return [
        KeyEntry(c.keys, key_id, c.t, first[key_id].old, None, c.new) for key_id, c in last.items()
    ]


def earlier_failures(url: str) -> list[dict[str, Any]]:
    """The lines an earlier run left in the failed-keys file (none if there is no file), read
    before anything is written: a file that cannot be read or is not JSON lines stops the
    run now, with one line, rather than be replaced."""
    fs, path = url_to_fs(url)
    try:
        with fs.open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InputError(
            f"{url}: cannot read the earlier failed keys: {describe_os_error(e)}"
        ) from e
    out: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            obj = None
            why = str(e)
        else:
            why = "not a JSON object"
        if not isinstance(obj, dict):
            raise InputError(
                f"{url}: line {number}: {why}: it would be replaced, losing the keys an earlier "
                "run could not apply; move it away or give another --failed-keys"
            )
        out.append(obj)
    return out


def unlocatable_note(router: Router, first: KeyEntry | None) -> str | None:
    """What cannot be repaired without old images (the stream has none): targets whose key
    comes from non-key attributes keep a copy under an old key. None when all is findable."""
    if first is None:
        return None
    elsewhere = router.keyed_elsewhere(first.keys)
    if not elsewhere:
        return None
    return (
        f"note: the stream has no old images, and {', '.join(elsewhere)} build their keys from "
        "non-key attributes: a copy left there under an old key cannot be found from the key "
        "alone; run diff to find any (or enable NEW_AND_OLD_IMAGES)"
    )
