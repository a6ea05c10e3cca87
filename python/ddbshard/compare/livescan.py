"""A live table as a source of items: a parallel Scan, read-unit budget and all.

`parquet dynamodb://T DEST` and `diff --source/--actual ...=dynamodb://T` read a table with
Scan instead of an export: no ExportTableToPointInTime, so no point-in-time recovery needed on
the new tables. The items are turned back into the lines an export holds (`{"Item": ...}`,
binaries as base64: catchup/wire.py) and fed to the same builder as file lines, so a copy of a
live table is the copy of an export of the same items, hash for hash.

- Segments: `TotalSegments = --segments` (default: one per GB of DescribeTable's size, at least
  one per worker); each segment is an input of the copy, read by one worker thread at a time,
  page by page with ExclusiveStartKey. A segment's name is `dynamodb://T#segment-N` in the
  copy's `file` column, and `line` is the item's position in that segment's scan (1-based), so
  a row can be found again only in the scan that wrote it.
- Retries: throttling, 5xx and dropped connections are retried by catchup's `Dynamo` rules
  with its RetryPolicy (full-jitter backoff, about a minute); a page is asked for again with
  the same ExclusiveStartKey, so no item is lost or read twice.
- Budget: `--max-rcu` is a token bucket of read units shared by the threads (readbudget.py),
  charged with each page's ConsumedCapacity (ReturnConsumedCapacity TOTAL). Pages are then
  limited (Limit) to about a second of the budget, so the rate holds within seconds too.

Cost (AWS "Capacity unit consumption for read operations"): a Scan page is charged by the
total size of the items it reads, rounded up to the next 4 KB: 0.5 read unit per 4 KB
eventually consistent, 1 per 4 KB with --consistent. The estimate printed before a scan is
`factor x (ceil(TableSizeBytes / 4096) + pages)` with `pages = max(segments,
ceil(TableSizeBytes / 1 MB))` (each page's rounding costs at most one more 4 KB). DescribeTable's
ItemCount and TableSizeBytes are updated about every six hours, so the estimate can be that old.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ddbshard.catchup.dynamo import Dynamo, RetryPolicy, client
from ddbshard.catchup.wire import item_from_client, item_size
from ddbshard.compare.locations import LIVE_SCHEME
from ddbshard.compare.readbudget import ReadBudget
from ddbshard.exceptions import ConfigError, InputError

__all__ = [
    "LiveScan",
    "ScanStats",
    "TableInfo",
    "default_segments",
    "estimate_units",
]

READ_UNIT_BYTES = 4096
PAGE_BYTES = 1 << 20  # a Scan page reads at most 1 MB
SEGMENT_BYTES = 1 << 30  # default: one segment per GB
MAX_SEGMENTS = 1_000_000  # Scan's TotalSegments limit

Keys = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableInfo:
    """What DescribeTable says of a table (counts refreshed by DynamoDB about every 6 h)."""

    name: str
    keys: Keys  # ((attribute, S|N|B) of the hash key[, of the range key])
    item_count: int
    size_bytes: int


@dataclass
class ScanStats:
    items: int = 0
    pages: int = 0
    units: float = 0.0  # read units DynamoDB reported (ConsumedCapacity)
    retried: int = 0  # pages asked for again (throttled, 5xx, connection)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def unit_factor(consistent: bool) -> float:
    """Read units per 4 KB read: 1 strongly consistent, 0.5 eventually consistent."""
    return 1.0 if consistent else 0.5


def default_segments(size_bytes: int, workers: int) -> int:
    return max(1, min(MAX_SEGMENTS, max(workers, math.ceil(size_bytes / SEGMENT_BYTES))))


def estimate_units(size_bytes: int, segments: int, consistent: bool) -> float:
    pages = max(segments, math.ceil(size_bytes / PAGE_BYTES))
    return unit_factor(consistent) * (math.ceil(size_bytes / READ_UNIT_BYTES) + pages)


class LiveScan:
    """One table's parallel Scan, as the inputs of a copy (`chunks(segment)`)."""

    def __init__(
        self,
        table: str,
        *,
        segments: int | None = None,
        workers: int = 1,
        max_rcu: float | None = None,
        consistent: bool = False,
        ddb: Any = None,
        policy: RetryPolicy | None = None,
        budget: ReadBudget | None = None,
    ) -> None:
        if segments is not None and not 1 <= segments <= MAX_SEGMENTS:
            raise ConfigError(f"--segments: 1 to {MAX_SEGMENTS:,}")
        if max_rcu is not None and max_rcu <= 0:
            raise ConfigError("--max-rcu: more than 0")
        self.table = table
        self.url = LIVE_SCHEME + table
        self.consistent = consistent
        self.max_rcu = max_rcu
        self._segments = segments
        self._workers = workers
        self._ddb = ddb
        # Set when the copy stops (another segment failed for good, Ctrl-C): every wait of
        # the scan (the budget's, a backoff) ends at once, and no page is asked for after.
        # A budget's wait may last minutes (a first page read before its cost is known).
        self._stopping = threading.Event()
        self._policy = policy or RetryPolicy(sleep=self._nap)
        self.budget = budget or (
            ReadBudget(max_rcu, sleep=self._nap) if max_rcu is not None else None
        )
        self.stats = ScanStats()
        self._info: TableInfo | None = None
        self._dynamo: Dynamo | None = None

    def stop(self) -> None:
        """Ends the segments' scans: a page under way is the last (make_copies calls this
        when the copy stops)."""
        self._stopping.set()

    def _nap(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    @property
    def dynamo(self) -> Dynamo:
        if self._dynamo is None:
            self._dynamo = Dynamo(self._ddb or client(), self._policy)
        return self._dynamo

    def describe(self) -> TableInfo:
        """DescribeTable, once: the key schema and DynamoDB's counts. One line on a missing
        table or refused access (InputError); missing credentials surface as botocore's."""
        if self._info is None:
            try:
                d = self.dynamo._call("describe_table", TableName=self.table)["Table"]
            except InputError as e:
                raise InputError(f"{self.url}: {e}") from e
            types = {a["AttributeName"]: a["AttributeType"] for a in d["AttributeDefinitions"]}
            ordered = sorted(d["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
            self._info = TableInfo(
                name=self.table,
                keys=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ordered),
                item_count=int(d.get("ItemCount") or 0),
                size_bytes=int(d.get("TableSizeBytes") or 0),
            )
        return self._info

    @property
    def segments(self) -> int:
        if self._segments is None:
            self._segments = default_segments(self.describe().size_bytes, self._workers)
        return self._segments

    def segment_name(self, segment: int) -> str:
        return f"{self.url}#segment-{segment}"

    def estimate_line(self) -> str:
        """What the scan will cost, before it starts (DescribeTable's figures)."""
        info = self.describe()
        units = estimate_units(info.size_bytes, self.segments, self.consistent)
        kind = "strongly consistent, 1" if self.consistent else "eventually consistent, 0.5"
        line = (
            f"{self.url}: {info.item_count:,} items, {info.size_bytes / 1e6:,.1f} MB "
            "(DescribeTable's figures, updated about every six hours): a scan in "
            f"{self.segments:,} segments reads about {units:,.1f} read units ({kind} per 4 KB)"
        )
        if self.max_rcu is not None:
            line += f", about {units / self.max_rcu:,.0f} s at --max-rcu {self.max_rcu:g}"
        return line

    def progress_note(self) -> str:
        with self.stats.lock:
            return f"{self.stats.pages:,} pages, {self.stats.units:,.1f} RCU"

    def summary(self) -> dict[str, Any]:
        info = self.describe()
        return {
            "table": self.table,
            "segments": self.segments,
            "consistent": self.consistent,
            "max_rcu": self.max_rcu,
            "items_scanned": self.stats.items,
            "pages": self.stats.pages,
            "consumed_read_units": round(self.stats.units, 1),
            "retried_pages": self.stats.retried,
            "budget_waited_seconds": round(self.budget.waited, 3) if self.budget else 0.0,
            "describe_table": {"item_count": info.item_count, "size_bytes": info.size_bytes},
        }

    # ----------------------------------------------------------------------------------------

    def chunks(self, segment: int) -> Iterator[bytes]:
        """The segment's items as export lines, a page at a time."""
        request: dict[str, Any] = {"TableName": self.table, "ReturnConsumedCapacity": "TOTAL"}
        if self.segments > 1:
            # A single segment is a plain Scan (and the only one moto can do on a binary
            # hash key: its parallel Scan fails on one).
            request.update(Segment=segment, TotalSegments=self.segments)
        if self.consistent:
            request["ConsistentRead"] = True
        per_item = self._initial_units_per_item()
        while True:
            answer = self._page(request, segment, per_item)
            if answer is None:
                return  # stopped: the copy is being abandoned
            items = answer.get("Items", [])
            if items:
                per_item = self._units(answer, items) / len(items)
            yield b"".join(_line(it) for it in items)
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _initial_units_per_item(self) -> float | None:
        info = self.describe()
        if not info.item_count or not info.size_bytes:
            return None
        return unit_factor(self.consistent) * info.size_bytes / info.item_count / READ_UNIT_BYTES

    def _page(self, request: dict[str, Any], segment: int, per_item: float | None) -> Any:
        """One page, retried until it comes (or the retries run out: InputError); None once
        the scan is stopped."""
        limit = self._limit(per_item)
        call = dict(request, Limit=limit) if limit else request
        # Reserved: what the page should cost (at least the smallest charge); settled with
        # what it did. Unknown at first without DescribeTable's sizes: the debt is paid later.
        reserve = max(unit_factor(self.consistent), (limit or 0) * (per_item or 0))
        attempts = 0
        while True:
            if self.budget is not None:
                self.budget.reserve(reserve)
            if self._stopping.is_set():
                return None
            answer = self.dynamo._try("scan", **call)
            if isinstance(answer, dict):
                items = answer.get("Items", [])
                units = self._units(answer, items)
                if self.budget is not None:
                    self.budget.settle(reserve, units)
                with self.stats.lock:
                    self.stats.pages += 1
                    self.stats.items += len(items)
                    self.stats.units += units
                return answer
            if self.budget is not None:
                self.budget.settle(reserve, 0.0)  # a refused call costs nothing
            if isinstance(answer, str):
                raise InputError(f"{self.segment_name(segment)}: Scan refused: {answer}")
            attempts += 1
            with self.stats.lock:
                self.stats.retried += 1
            if attempts >= self.dynamo.policy.max_attempts:
                why = self.dynamo.retry_reason()
                hint = "; try a lower --max-rcu or fewer --segments"
                raise InputError(
                    f"{self.segment_name(segment)}: Scan still failing after {attempts} attempts "
                    f"(the last: {why}){hint if self.dynamo.throttled_last() else ''}"
                )
            self.dynamo.policy.backoff(attempts)

    def _limit(self, per_item: float | None) -> int | None:
        """Items per page under a budget: about one second's worth of read units."""
        if self.budget is None or not per_item:
            return None
        return max(1, int(self.budget.rate / per_item))

    def _units(self, answer: dict[str, Any], items: list[dict[str, Any]]) -> float:
        consumed = answer.get("ConsumedCapacity") or {}
        if "CapacityUnits" in consumed:
            return float(consumed["CapacityUnits"])
        # Not reported (an endpoint that ignores ReturnConsumedCapacity): the documented rule.
        size = sum(item_size(item_from_client(it)) for it in items)
        return unit_factor(self.consistent) * max(1, math.ceil(size / READ_UNIT_BYTES))


def _line(item: dict[str, Any]) -> bytes:
    """An item as boto3 returns it (B as bytes) as an export line (B as base64)."""
    wire = item_from_client(item)
    return b'{"Item":' + json.dumps(wire, ensure_ascii=False).encode() + b"}\n"
