"""Reading a table's DynamoDB stream directly, with a checkpoint: what `keys --from-stream` and
`replicate` take their change records from.

AWS's rules that shape the reader (AWS-FORMATS.md §5; DynamoDB Streams API reference):

- A stream is a set of shards. A shard is split or closed every few hours; its children name it
  as ParentShardId, and a key's records move from parent to child. Reading every parent to its
  end before its children keeps each key's records in order, which is all that order needs.
- DescribeStream pages its shards (ExclusiveStartShardId / LastEvaluatedShardId). A closed
  shard has an EndingSequenceNumber; its GetRecords pages end with no NextShardIterator (pages
  before that may be empty). An open shard always returns a NextShardIterator: it is read up to
  the first empty page ("now").
- Records live 24 hours. A shard whose records are all trimmed disappears from DescribeStream,
  so a shard whose ParentShardId is not listed any more may have lost older records; reading a
  trimmed position fails with TrimmedDataAccessException. Iterators expire after 15 minutes
  (ExpiredIteratorException): a new one is taken after the last record read.
- GetRecords returns at most 1000 records per call, and a shard allows about five calls a
  second (LimitExceededException beyond that).

Records are checked exactly as records read from a file are (`changes.parse_record`): botocore
hands back B values as bytes and ApproximateCreationDateTime as a datetime, both turned back into
their wire form first. A bad record comes out as a `Malformed` naming its shard and sequence
number; it never stops a run.

The checkpoint (`Checkpoint`, local or s3://) holds per shard the sequence number of the last
record taken and which shards are finished. The reader never saves it on its own: the caller
takes a `progress()` snapshot after the records it has dealt with and `commit`s it, so a
consumer that applies records before committing reads each at least once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from ddbshard.catchup.changefiles import Malformed
from ddbshard.catchup.changes import Change, RecordError, parse_record
from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.catchup.wire import item_from_client
from ddbshard.exceptions import ConfigError, DdbShardError, InputError, ResumeError
from ddbshard.io.storage import aws_setup_problem, describe_os_error, is_s3, url_to_fs

__all__ = [
    "Checkpoint",
    "Progress",
    "Shard",
    "StreamReader",
    "Trimmed",
    "Unpacked",
    "call_retried",
    "code_of",
    "epoch_micros",
    "iso_time",
    "lineage_order",
    "lock_checkpoint",
    "resolve_stream",
    "streams_client",
]

GET_LIMIT: Final = 1000  # GetRecords' maximum per call
_THROTTLED: Final = frozenset(
    {
        "LimitExceededException",
        "KMSThrottlingException",  # Kinesis, on an encrypted stream
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)
_SERVER: Final = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})
_CHECKPOINT_VERSION: Final = 1


class Trimmed(DdbShardError):
    """Records the run needs may already be gone from the stream (older than 24 hours): the
    list or the replica cannot be claimed complete. Commands exit 1 with this line."""


def streams_client(region: str | None = None) -> Any:
    """A DynamoDB Streams client with botocore's retries off: every retry is the reader's,
    counted and bounded like dynamo.client()'s."""
    import boto3
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("dynamodbstreams", region_name=region, config=config)


def call_retried(client: Any, op: str, policy: RetryPolicy, **kwargs: Any) -> dict[str, Any]:
    """One API call, retried on throttling, 5xx and dropped connections with full-jitter
    backoff; any other ClientError is the caller's (expired iterators, trimmed data)."""
    from botocore.exceptions import BotoCoreError, ClientError

    why = ""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            answer: dict[str, Any] = getattr(client, op)(**kwargs)
            return answer
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code not in _THROTTLED and code not in _SERVER and status < 500:
                raise
            why = code or f"HTTP {status}"
        except BotoCoreError as e:
            if aws_setup_problem(e) is not None:
                raise
            why = str(e)  # a refused or dropped connection is not throttling: say which
        if attempt < policy.max_attempts:
            policy.backoff(attempt)
    raise InputError(f"{op}: still failing after {policy.max_attempts} attempts (the last: {why})")


def code_of(e: Exception) -> str:
    """A ClientError's AWS error code ("" for any other exception)."""
    response = getattr(e, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def resolve_stream(ddb: Any, table_or_arn: str, policy: RetryPolicy | None = None) -> str:
    """The stream ARN: a stream's ARN as given, or a table's LatestStreamArn, the table given
    by its name or its ARN (InputError when the table is missing or has no stream enabled)."""
    if table_or_arn.startswith("arn:") and "/stream/" in table_or_arn:
        return table_or_arn
    from botocore.exceptions import ClientError

    try:
        table = call_retried(ddb, "describe_table", policy or RetryPolicy(), TableName=table_or_arn)
    except ClientError as e:
        message = e.response.get("Error", {}).get("Message", "")
        raise InputError(f"table {table_or_arn}: {code_of(e)}: {message}") from e
    described = table["Table"]
    arn = described.get("LatestStreamArn")
    if not arn or not described.get("StreamSpecification", {}).get("StreamEnabled", True):
        raise InputError(
            f"table {table_or_arn} has no stream enabled: enable one (NEW_AND_OLD_IMAGES) with "
            "aws dynamodb update-table --stream-specification, or give the stream's ARN"
        )
    return str(arn)


@dataclass(frozen=True)
class Shard:
    id: str
    parent: str | None
    start: str  # StartingSequenceNumber
    end: str | None  # EndingSequenceNumber; None: the shard is open
    adjacent: str | None = None  # Kinesis: the other parent of a merged shard

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent, self.adjacent) if p is not None)


def lineage_order(shards: list[Shard]) -> list[Shard]:
    """Shards with every listed parent before its children, oldest lineages first."""
    by_id = {s.id: s for s in shards}
    done: set[str] = set()
    out: list[Shard] = []

    def visit(s: Shard) -> None:
        if s.id in done:
            return
        done.add(s.id)
        for parent in s.parents:
            if parent in by_id:
                visit(by_id[parent])
        out.append(s)

    for s in sorted(shards, key=lambda s: (int(s.start) if s.start.isdigit() else 0, s.id)):
        visit(s)
    return out


@dataclass(frozen=True)
class Progress:
    """Where a reader stands: last sequence number taken per shard, and the shards done."""

    positions: dict[str, str]
    finished: frozenset[str]


@dataclass
class Checkpoint:
    """The stream a run reads and how far it has been read; local or s3://."""

    url: str
    stream: str
    positions: dict[str, str] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    existed: bool = False  # loaded from a file (False: a new checkpoint)

    @classmethod
    def load(cls, url: str | None, stream: str) -> Checkpoint:
        """The checkpoint at `url` (a new one if there is none); ConfigError when it belongs to
        another stream, InputError when it cannot be read."""
        if url is None:
            return cls("", stream)
        fs, path = url_to_fs(url)
        try:
            with fs.open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            if is_s3(url):
                _check_bucket(fs, path, url)
            return cls(url, stream)
        except OSError as e:
            raise InputError(f"{url}: cannot read the checkpoint: {describe_os_error(e)}") from e
        except ValueError as e:
            raise InputError(f"{url}: not a stream checkpoint (JSON): {e}") from e
        if not isinstance(data, dict) or data.get("version") != _CHECKPOINT_VERSION:
            raise InputError(f"{url}: not a stream checkpoint of this ddbshard version")
        if data.get("stream") != stream:
            raise ConfigError(
                f"{url}: the checkpoint is of the stream {data.get('stream')}, not {stream}: "
                "give another --checkpoint (a new stream is read from its start)"
            )
        shards, finished = data.get("shards", {}), data.get("finished", [])
        # Checked, not coerced: a position that is not a sequence number would fail every
        # GetShardIterator later, and a string taken for a list of shards would be its letters.
        if (
            not isinstance(shards, dict)
            or not all(isinstance(v, str) and v.isdigit() for v in shards.values())
            or not isinstance(finished, list)
            or not all(isinstance(s, str) for s in finished)
        ):
            raise InputError(
                f"{url}: not a stream checkpoint: 'shards' must map shard ids to sequence "
                "numbers and 'finished' list shard ids"
            )
        return cls(url, stream, dict(shards), set(finished), existed=True)

    def apply(self, progress: Progress) -> None:
        self.positions = dict(progress.positions)
        self.finished = set(progress.finished)
        # A finished shard's position says nothing more: only unfinished ones are kept.
        for shard in self.finished:
            self.positions.pop(shard, None)

    def save(self) -> None:
        if not self.url:
            return
        data = {
            "version": _CHECKPOINT_VERSION,
            "stream": self.stream,
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            "shards": dict(sorted(self.positions.items())),
            "finished": sorted(self.finished),
        }
        body = json.dumps(data, indent=1).encode() + b"\n"
        try:
            if is_s3(self.url):
                fs, path = url_to_fs(self.url)
                fs.pipe_file(path, body)  # an S3 PUT replaces the object whole
            else:
                _replace_atomically(Path(self.url), body)
        except OSError as e:
            why = describe_os_error(e)
            raise InputError(f"{self.url}: cannot save the checkpoint: {why}") from e
        self.existed = True


def _check_bucket(fs: Any, path: str, url: str) -> None:
    """A new s3:// checkpoint's bucket must exist now: found missing only at the first save,
    it would stop the run after its first batch of work. (S3 answers a missing object the
    same way whether its bucket exists or not.) HeadBucket needs s3:ListBucket, which a role
    allowed only to get and put the checkpoint lacks: denied, the save will tell."""
    bucket = path.split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise InputError(
            f"{url}: cannot keep the checkpoint there: the bucket {bucket} does not exist"
        ) from None
    except OSError:
        pass


_HELD: list[int] = []  # the checkpoint locks this process holds


def lock_checkpoint(url: str) -> None:
    """Takes the checkpoint at `url` for the life of the process, or ResumeError (one line) when
    another run holds it. Two runs on one checkpoint would both apply the same records,
    one possibly putting a key's older state after the other's newer one, and move the
    checkpoint back and forth. flock(2): the kernel lets go when the process dies however
    it dies, so a run killed with -9 is simply restarted. The lock file sits beside a
    local checkpoint (its folder is made now, so a bad location fails before any write);
    an s3:// checkpoint is locked on this machine only, in the cache folder."""
    if not url:
        return
    if is_s3(url):
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        digest = hashlib.sha256(url.encode()).hexdigest()[:24]
        path = cache / "ddbshard" / "locks" / f"{digest}.lock"
    else:
        local = Path(url.removeprefix("file://"))
        path = local.with_name(local.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        why = describe_os_error(e)
        raise InputError(f"{url}: cannot lock the checkpoint: {why}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another process"
        os.close(fd)
        raise ResumeError(
            f"{url}: another run is reading the stream with this checkpoint ({who}); "
            f"wait for it to end or stop it (its lock: {path})"
        ) from None
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": iso_time(_now())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
    _HELD.append(fd)  # never closed: the process's end releases it


def _replace_atomically(path: Path, body: bytes) -> None:
    """Write, fsync, rename, fsync the folder: a reader (or a restart after kill -9 or a power
    cut) sees the old checkpoint or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


@dataclass
class ReadStats:
    records: int = 0
    malformed: int = 0
    shards_read: set[str] = field(default_factory=set)
    calls: int = 0
    expired: int = 0  # iterators taken again after ExpiredIteratorException


@dataclass(frozen=True)
class Unpacked:
    """What the reader needs of one GetRecords record before parsing it."""

    seq: Any  # its sequence number (a string of digits when valid)
    t: int | None  # when the change was made (µs), None if the record cannot say
    arrival: int | None  # when the stream took it (µs): what --until stops reading at
    payload: Any  # what `_parse` turns into a Change
    problem: str | None = None  # the record cannot be parsed at all (a Kinesis Data not JSON)


class StreamReader:
    """Reads a stream's shards, parents before children, from a checkpoint.

    `read()` is one pass: every shard readable now, closed ones to their end, open ones until a
    GetRecords call returns nothing. Records at or after `until` are not taken (nor the shard's
    children read). `drained` says whether the last pass left nothing behind: every shard read
    to its end or to "now", none held back by `until`.

    The DynamoDB Streams API is the default; kinesis.KinesisReader overrides the hooks (the
    listing, iterator arguments, record layout, "now" and retention) for Kinesis Data Streams.
    """

    retention_hours = 24  # how long the stream keeps records
    late_micros = 0  # how much later than --until a record of the window may still arrive

    def __init__(
        self,
        streams: Any,
        checkpoint: Checkpoint,
        *,
        policy: RetryPolicy | None = None,
        since: int | None = None,
        until: int | None = None,
        start: str = "trim-horizon",
        clock: Any = time.time,
    ) -> None:
        self.streams = streams
        self.arn = checkpoint.stream
        self.checkpoint = checkpoint
        self.policy = policy or RetryPolicy()
        self.since = since
        self.until = until
        self.start = start
        self.clock = clock
        self.positions = dict(checkpoint.positions)
        self.finished = set(checkpoint.finished)
        self.iterators: dict[str, str] = {}  # open shards' next iterators, kept between passes
        self.stats = ReadStats()
        self.drained = False
        self.view_type: str | None = None
        self.created: int | None = None  # when the stream was enabled (CreationRequestDateTime)
        self._started = checkpoint.existed

    def describe(self) -> list[Shard]:
        """Every shard DescribeStream lists (all pages), parents first."""
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamArn": self.arn}
        while True:
            answer = self._call("describe_stream", **kwargs)["StreamDescription"]
            self.view_type = answer.get("StreamViewType", self.view_type)
            self.created = epoch_micros(answer.get("CreationRequestDateTime")) or self.created
            for s in answer.get("Shards", []):
                seqs = s.get("SequenceNumberRange", {})
                shards.append(
                    Shard(
                        s["ShardId"],
                        s.get("ParentShardId"),
                        str(seqs.get("StartingSequenceNumber", "")),
                        seqs.get("EndingSequenceNumber"),
                    )
                )
            last = answer.get("LastEvaluatedShardId")
            if not last:
                return lineage_order(shards)
            kwargs["ExclusiveStartShardId"] = last

    def progress(self) -> Progress:
        """What has been taken so far (every record `read` has yielded)."""
        return Progress(dict(self.positions), frozenset(self.finished))

    def commit(self, progress: Progress) -> None:
        """Records up to `progress` are dealt with: the checkpoint moves there."""
        self.checkpoint.apply(progress)
        self.checkpoint.save()

    def read(self) -> Iterator[Change | Malformed]:
        shards = self.describe()
        listed = {s.id for s in shards}
        if not self._started:
            self._begin(shards, listed)
        self._check_trimmed(shards, listed)
        # A finished shard is remembered while it or a child of it is listed: a listed shard
        # whose parent is neither listed nor finished lost records to trimming.
        self.finished &= listed | {p for s in shards for p in s.parents}
        # Not drained while the pass runs: a caller looking in the middle of it (replicate's
        # status line) is behind by whatever is still unread, not caught up.
        self.drained = False
        complete = True
        for shard in shards:
            if shard.id in self.finished:
                continue
            if any(p in listed and p not in self.finished for p in shard.parents):
                continue  # a parent stopped at --until in this pass: the child waits
            complete = (yield from self._shard(shard)) and complete
        self.iterators = {k: v for k, v in self.iterators.items() if k in listed}
        self.drained = complete

    def _begin(self, shards: list[Shard], listed: set[str]) -> None:
        """A new checkpoint: shards whose parent is gone start the stream as far as this run
        is concerned (the parents count as finished); --since says whether that loses
        records; --from latest skips what the stream holds now."""
        self._started = True
        if self.since is not None and self.created is not None and self.created > self.since:
            # Not trimmed but never there: writes before the stream was enabled (or re-enabled,
            # which makes a new stream) are in no stream at all.
            enabled = iso_time(self.created, "milliseconds")
            since = iso_time(self.since, "milliseconds")
            raise Trimmed(
                f"{self.arn} was enabled at {enabled}, after --since {since}: changes made in "
                "between are in no stream; cover the gap with an incremental export from --since"
            )
        for s in shards:
            gone = [p for p in s.parents if p not in listed]
            self.finished.update(gone)
            if gone and self.since is not None:
                self._check_first_record(s, gone[0])
        if self.start == "latest":
            for s in shards:
                if s.end is not None:
                    self.finished.add(s.id)
                else:
                    self._skip_to_now(s)

    def _kept(self) -> str:
        hours = self.retention_hours
        return f"{hours // 24} days" if hours > 48 and hours % 24 == 0 else f"{hours} hours"

    def _check_first_record(self, shard: Shard, parent: str) -> None:
        """Refuses a window whose start may be trimmed: the shard's parent is gone, so
        records older than its first one may have been lost."""
        assert self.since is not None
        page = self._get_records(shard, self._iterator(shard, "TRIM_HORIZON"), limit=1)
        first = page.get("Records", [])
        if first:
            got = self._unpack(first[0])
            # A record with no change time (another producer's, on a Kinesis stream) still
            # has its arrival, never before the change it would carry.
            t = got.t if got.t is not None else got.arrival
            if t is None or t <= self.since:
                return
            when = iso_time(t)
        else:
            retention = self.retention_hours * 3600 * 1_000_000
            if self.since >= int(self.clock() * 1_000_000) - retention:
                return
            when = f"the last {self._kept()}"
        raise Trimmed(
            f"{self.arn}: shard {shard.id}'s parent {parent} is gone and its oldest record "
            f"is from {when}, after --since {iso_time(self.since)}: records since then may "
            f"already be trimmed (kept {self._kept()}); cover the gap with an incremental "
            "export from --since"
        )

    def _skip_to_now(self, shard: Shard) -> None:
        """Positions an open shard after its newest record, reading and dropping what it holds:
        a LATEST iterator has no sequence number a checkpoint could keep."""
        it: str | None = self._iterator(shard, "TRIM_HORIZON")
        while it:
            page = self._get_records(shard, it)
            records = page.get("Records", [])
            if not records and self._at_now(shard, page):
                self.iterators[shard.id] = page.get("NextShardIterator") or it
                return
            found = (self._unpack(r).seq for r in records)
            seqs = [q for q in found if isinstance(q, str) and q.isdigit()]
            if seqs:
                self.positions[shard.id] = seqs[-1]
            it = page.get("NextShardIterator")

    def _check_trimmed(self, shards: list[Shard], listed: set[str]) -> None:
        for shard_id in sorted(self.positions):
            if shard_id not in listed and shard_id not in self.finished:
                raise Trimmed(
                    f"{self.arn}: shard {shard_id} of the checkpoint is gone from the stream "
                    "before it was read to its end: its newer records were trimmed (kept "
                    f"{self._kept()}); catch up with an incremental export, then start a new "
                    "checkpoint"
                )
        for s in shards:
            for parent in s.parents:
                if parent not in listed and parent not in self.finished:
                    raise Trimmed(
                        f"{self.arn}: shard {s.id}'s parent {parent} was never read and is "
                        f"gone from the stream: its records were trimmed (kept {self._kept()}); "
                        "catch up with an incremental export, then start a new checkpoint"
                    )

    def _shard(self, shard: Shard) -> Generator[Change | Malformed, None, bool]:
        """One shard's records from its position; returns whether the shard was read to its
        end (closed) or to now (open), rather than stopped at --until.

        At --until the position stays before the first record at or after it, but reading
        goes on while records arrive within `late_micros` of --until: a stream that may
        deliver out of order (Kinesis) can still hold a change of the window behind it. Such
        a record is yielded now and again by the next run (at least once, never lost)."""
        self.stats.shards_read.add(shard.id)
        it: str | None = self.iterators.pop(shard.id, None) or self._resume_iterator(shard)
        held = False  # a record at or after --until was met: the position stays before it
        while it:
            page = self._get_records(shard, it)
            records = page.get("Records", [])
            for record in records:
                got = self._unpack(record)
                if self.until is not None:
                    arrival = got.arrival if got.arrival is not None else got.t
                    if arrival is not None and arrival >= self.until + self.late_micros:
                        return False
                    if got.t is not None and got.t >= self.until:
                        held = True
                        continue
                self.stats.records += 1
                seq = got.seq
                if not (isinstance(seq, str) and seq.isdigit()):
                    # No position to keep: the checkpoint stays at the record before (a
                    # restart reads this one again, and it is malformed again).
                    self.stats.malformed += 1
                    where = f"{shard.id} #{_after(self.positions.get(shard.id))}"
                    yield Malformed(where, "no SequenceNumber: not a stream record")
                    continue
                if not held:
                    self.positions[shard.id] = seq
                yield self._change(shard, seq, got)
            following = page.get("NextShardIterator")
            at_now = not records and self._at_now(shard, page)
            if held and (following is None or at_now):
                return False  # neither finished nor caught up: the next run reads from --until
            if following is None:
                self.finished.add(shard.id)
                self.positions.pop(shard.id, None)
                return True
            if at_now:
                self.iterators[shard.id] = following  # an open shard, read up to now
                return True
            # A closed shard may answer an empty page before its end (GetRecords: "it might
            # take multiple calls to get to a portion of the shard that contains stream
            # records"): only a missing NextShardIterator ends it.
            it = following
        return True

    def _at_now(self, shard: Shard, page: dict[str, Any]) -> bool:
        """An empty page: is the shard read up to now? (An open DynamoDB stream shard: yes.)"""
        return shard.end is None

    def _get_records(self, shard: Shard, it: str, limit: int = GET_LIMIT) -> dict[str, Any]:
        """GetRecords with a new iterator when the old one expired (after the last record
        taken); Trimmed when the position itself is gone."""
        from botocore.exceptions import ClientError

        while True:
            try:
                return self._call("get_records", ShardIterator=it, Limit=limit)
            except ClientError as e:
                code = code_of(e)
                if code == "ExpiredIteratorException":
                    self.stats.expired += 1
                    it = self._resume_iterator(shard)
                elif code == "TrimmedDataAccessException":
                    raise self._trimmed(shard) from e
                else:
                    raise self._failed("get_records", e) from e

    def _resume_iterator(self, shard: Shard) -> str:
        seq = self.positions.get(shard.id)
        if seq is None:
            return self._first_iterator(shard)
        return self._iterator(shard, "AFTER_SEQUENCE_NUMBER", seq)

    def _first_iterator(self, shard: Shard) -> str:
        """Where a shard never read before starts."""
        return self._iterator(shard, "TRIM_HORIZON")

    def _iterator(self, shard: Shard, kind: str, seq: str | None = None) -> str:
        from botocore.exceptions import ClientError

        try:
            answer = self._call("get_shard_iterator", **self._iterator_args(shard, kind, seq))
            return str(answer["ShardIterator"])
        except ClientError as e:
            if code_of(e) in ("TrimmedDataAccessException", "ResourceNotFoundException") and seq:
                raise self._trimmed(shard) from e
            raise self._failed("get_shard_iterator", e) from e

    def _iterator_args(self, shard: Shard, kind: str, seq: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard.id}
        kwargs["ShardIteratorType"] = kind
        if seq is not None:
            kwargs["SequenceNumber"] = seq
        return kwargs

    def _trimmed(self, shard: Shard) -> Trimmed:
        seq = self.positions.get(shard.id)
        at = f"after sequence number {seq}" if seq else "from its start"
        return Trimmed(
            f"{self.arn}: shard {shard.id} cannot be read {at}: those records were trimmed "
            f"(kept {self._kept()}); catch up with an incremental export, then start a new "
            "checkpoint"
        )

    def _failed(self, op: str, e: Exception) -> InputError:
        message = getattr(e, "response", {}).get("Error", {}).get("Message", "")
        return InputError(f"{op} on {self.arn}: {code_of(e)}: {message}")

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.stats.calls += 1
        try:
            return call_retried(self.streams, op, self.policy, **kwargs)
        except ClientError as e:
            if op not in ("get_records", "get_shard_iterator"):  # the listing
                raise self._failed(op, e) from e
            raise

    def _unpack(self, record: Any) -> Unpacked:
        body = _body(record)
        t = epoch_micros(body.get("ApproximateCreationDateTime"))
        return Unpacked(body.get("SequenceNumber"), t, t, record)

    def _change(self, shard: Shard, seq: str, got: Unpacked) -> Change | Malformed:
        where = f"{shard.id} #{seq}"
        try:
            if got.problem is not None:
                raise RecordError(got.problem)
            return self._parse(got, where)
        except (RecordError, ValueError, TypeError, AttributeError) as e:
            self.stats.malformed += 1
            return Malformed(where, str(e))

    def _parse(self, got: Unpacked, where: str) -> Change:
        return parse_record("streams", _wire(got.payload), where)


def _body(record: Any) -> dict[str, Any]:
    """A record's `dynamodb` object, or {} for a record too broken to have one (it is reported
    as malformed by parse_record, never a traceback here)."""
    body = record.get("dynamodb") if isinstance(record, dict) else None
    return body if isinstance(body, dict) else {}


def _after(seq: str | None) -> str:
    return f"after {seq}" if seq else "at the start"


def _wire(record: Any) -> Any:
    """A GetRecords record in the wire form a Lambda event carries (B as base64 text, the
    time as epoch seconds), so that parse_record checks it as it checks a file's."""
    if not isinstance(record, dict):
        return record
    body = record.get("dynamodb")
    if not isinstance(body, dict):
        return record
    body = dict(body)
    for name in ("Keys", "NewImage", "OldImage"):
        if isinstance(body.get(name), dict):
            body[name] = item_from_client(body[name])
    when = body.get("ApproximateCreationDateTime")
    if isinstance(when, datetime):
        micros = epoch_micros(when)
        assert micros is not None
        body["ApproximateCreationDateTime"] = Decimal(micros) / 1_000_000  # exact
    return {**record, "dynamodb": body}


def epoch_micros(when: Any) -> int | None:
    if isinstance(when, datetime):
        moment: datetime = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(when, int | float | Decimal) and not isinstance(when, bool):
        return int(Decimal(str(when)) * 1_000_000)
    return None


def iso_time(micros: int, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat(timespec=timespec)


def _now() -> int:
    return int(time.time() * 1_000_000)
