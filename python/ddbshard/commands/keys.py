"""`keys --from streams|kinesis|incremental INPUT... --out KEYS`: the keys changed in a window;
`keys --from-stream TABLE_OR_STREAM_ARN --out KEYS [--checkpoint PATH]` reads the table's
DynamoDB stream itself (catchup/streams.py), continuing after the checkpoint of the last run;
`keys --from-kinesis STREAM` the same for a Kinesis Data Streams for DynamoDB stream
(catchup/kinesis.py).

Reads change records (see catchup/changes.py for the three kinds and catchup/changefiles.py
for the file layouts), keeps those whose time is in [--since, --until), and writes each
distinct key once, with the time of its last change and its state before its first (the
keys-file format is in catchup/keysfile.py and docs/catchup.md). A record that is not valid is
reported with its file and position and counted, and the run goes on: exit status 1 then says
the list may be incomplete.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ddbshard.catchup.changefiles import Malformed, read_changes
from ddbshard.catchup.changes import KINDS, Change
from ddbshard.catchup.keysfile import KeyCollector, entry_json, write_lines
from ddbshard.catchup.streams import (
    Checkpoint,
    StreamReader,
    Trimmed,
    lock_checkpoint,
    resolve_stream,
    streams_client,
)
from ddbshard.commands import change_time, non_negative_int
from ddbshard.exceptions import ConfigError
from ddbshard.io.storage import check_output

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="kind",
        choices=KINDS,
        help="DynamoDB Streams records, Kinesis Data Streams for DynamoDB records, or an "
        "incremental export",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="files, folders, globs or export roots (local or s3://)",
    )
    p.add_argument(
        "--from-stream",
        metavar="TABLE_OR_STREAM_ARN",
        help="read the table's DynamoDB stream directly (a table name: its latest stream)",
    )
    p.add_argument(
        "--from-kinesis",
        metavar="STREAM",
        help="read a Kinesis Data Streams for DynamoDB stream directly (its name or ARN)",
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="with --from-stream or --from-kinesis: continue after this checkpoint and move "
        "it to the last record taken (local or s3://; created if missing)",
    )
    p.add_argument(
        "--table",
        metavar="NAME",
        help="only the changes of this table, where the records name their table (a Kinesis "
        "stream or files that carry several tables' changes); without it, records of a second "
        "table stop the run",
    )
    p.add_argument("--region", help="AWS region of the stream (default: from the environment)")
    p.add_argument(
        "--since",
        type=change_time,
        help="only changes at or after this time: ISO 8601 (UTC unless a zone is given) or "
        "epoch seconds, milliseconds or microseconds",
    )
    p.add_argument("--until", type=change_time, help="only changes before this time (same forms)")
    p.add_argument("--out", required=True, help="the keys file to write (local or s3://)")
    p.add_argument(
        "--show",
        type=non_negative_int,
        default=10,
        help="malformed records to print (default 10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: Any) -> int:
    problem = _usage(args)
    if problem is not None:
        print(f"ddbshard: error: {problem}", file=sys.stderr)
        return 2
    check_output(args.out, "--out", file=True)  # before any record is read
    reader = None
    if args.from_stream or args.from_kinesis:
        reader = _reader(args)
        changes: Iterable[Change | Malformed] = reader.read()
    else:
        changes = read_changes(args.inputs, args.kind)
    try:
        return _collect(args, changes, reader)
    except Trimmed as e:
        print(f"ddbshard: error: {e}", file=sys.stderr)
        return 1
    except MixedTables as e:
        print(f"ddbshard: error: {e}", file=sys.stderr)
        return 2


class MixedTables(Exception):
    """Records of two tables, and no --table to say which one is wanted."""


def _usage(args: Any) -> str | None:
    if args.since is not None and args.until is not None and args.until <= args.since:
        return "--until must be later than --since"
    live = "--from-stream" if args.from_stream else "--from-kinesis" if args.from_kinesis else None
    if args.from_stream and args.from_kinesis:
        return "give --from-stream or --from-kinesis, not both"
    if live:
        if args.kind or args.inputs:
            return f"{live} reads the stream itself: no --from, no INPUT"
        if args.from_kinesis and args.until is not None:
            from ddbshard.catchup.kinesis import LATE_MICROS

            # Kinesis may deliver a change made before --until up to LATE_MICROS after it
            # (the reader reads on that long past --until). Before then the stream read to now
            # may still lack one, and the keys file would claim the window without it.
            ready = args.until + LATE_MICROS
            if ready > time.time() * 1_000_000:
                return (
                    f"--until {_iso(args.until)}: Kinesis may deliver changes made before it "
                    f"until {_iso(ready)} ({LATE_MICROS // 1_000_000} s later), so the window "
                    "cannot be read complete yet; run then, or leave --until out"
                )
    elif not args.kind or not args.inputs:
        return (
            "give --from KIND INPUT... (records in files), --from-stream TABLE or "
            "--from-kinesis STREAM"
        )
    elif args.checkpoint:
        return "--checkpoint goes with --from-stream or --from-kinesis"
    elif args.table and args.kind == "incremental":
        return "--table: an incremental export holds one table's changes and names none"
    return None


def _reader(args: Any) -> StreamReader:
    from ddbshard.catchup.dynamo import client

    if args.from_kinesis:
        return _kinesis_reader(args)
    if args.from_stream.startswith("arn:") and ":kinesis:" in args.from_stream:
        raise ConfigError(f"--from-stream {args.from_stream}: a Kinesis stream: use --from-kinesis")
    arn = resolve_stream(client(args.region), args.from_stream)
    own = arn.split(":table/", 1)[-1].split("/stream/", 1)[0] if ":table/" in arn else None
    if args.table and own is not None and args.table != own:
        # A DynamoDB stream holds one table's changes, and its records name no table: they
        # would all be taken as --table's.
        raise ConfigError(
            f"--table {args.table}: the stream {arn} holds the changes of table {own} only"
        )
    if args.checkpoint:
        # One run per checkpoint: two would move it back and forth (the lock also makes the
        # checkpoint's folder, so a bad location fails before the stream is read).
        lock_checkpoint(args.checkpoint)
    checkpoint = Checkpoint.load(args.checkpoint, arn)
    # --since filters as it does for files; it also says when the stream may no longer hold
    # the window's start (records are kept 24 hours).
    since = None if checkpoint.existed else args.since
    return StreamReader(streams_client(args.region), checkpoint, since=since, until=args.until)


def _kinesis_reader(args: Any) -> StreamReader:
    from ddbshard.catchup.kinesis import KinesisReader, describe_kinesis, kinesis_client

    kinesis = kinesis_client(args.region)
    stream = describe_kinesis(kinesis, args.from_kinesis)
    if args.checkpoint:
        lock_checkpoint(args.checkpoint)
    checkpoint = Checkpoint.load(args.checkpoint, stream.arn)
    since = None if checkpoint.existed else args.since
    return KinesisReader(kinesis, stream, checkpoint, since=since, until=args.until)


def _collect(args: Any, changes: Iterable[Change | Malformed], reader: StreamReader | None) -> int:
    since: int | None = args.since
    until: int | None = args.until
    windowed = since is not None or until is not None
    collector = KeyCollector()
    records = malformed = images = before = after = other = 0
    tables = _Tables(args.table)
    ticker = _Ticker(enabled=not args.quiet)
    for change in changes:
        records += 1
        ticker.tick(records, len(collector))
        if isinstance(change, Malformed):
            malformed += 1
            _report(malformed + images, args.show, change.where, change.reason)
            continue
        if not tables.wanted(change):
            other += 1
            continue
        if change.problem is not None:
            images += 1
            reason = f"{change.problem} (image left out, key kept)"
            _report(malformed + images, args.show, change.where, reason)
        if windowed and change.t is None:
            malformed += 1
            reason = "no time: cannot tell whether it is in the window"
            _report(malformed + images, args.show, change.where, reason)
            continue
        if since is not None and change.t is not None and change.t < since:
            before += 1
        elif until is not None and change.t is not None and change.t >= until:
            after += 1
        else:
            collector.add(change)
    ticker.close()
    if malformed + images > args.show:
        more = malformed + images - args.show
        print(f"ddbshard keys: ... and {more} more malformed records", file=sys.stderr)
    entries = collector.entries()
    write_lines(args.out, (entry_json(e) for e in entries))
    window = ""
    if windowed:
        window = f"; outside the window: {before:,} before --since, {after:,} from --until on"
    if args.table:
        window += f"; {other:,} of other tables than {args.table}"
    print(
        f"read {records:,} records: {malformed:,} malformed, {images:,} with an invalid image "
        f"(key kept){window}"
    )
    times = [e.t for e in entries if e.t is not None]
    span = f" (last changes {_iso(min(times))} .. {_iso(max(times))})" if times else ""
    print(f"wrote {len(entries):,} distinct keys to {args.out}{span}")
    if reader is not None:
        # The keys file is written: only now may the checkpoint pass these records.
        reader.commit(reader.progress())
        saved = f"; checkpoint {args.checkpoint}" if args.checkpoint else ""
        print(f"read {len(reader.stats.shards_read):,} shards of {reader.arn}{saved}")
    if malformed:
        print(
            f"ddbshard: {malformed} malformed records were skipped: the keys may be incomplete",
            file=sys.stderr,
        )
    if args.table and not tables.matched and tables.others:
        # A window without that table's changes, or a misspelt name: say which were there.
        print(
            f"ddbshard keys: note: no record of the table {args.table}; the records are of "
            f"{', '.join(sorted(tables.others))}",
            file=sys.stderr,
        )
    return 1 if malformed or images else 0


class _Tables:
    """Which records' keys are taken: with --table, those of that table (records that name no
    table are taken: nothing says they are another's); without it, those of the one table the
    records name, a second one being an error rather than keys of two tables in one file."""

    def __init__(self, table: str | None) -> None:
        self.table = table
        self.seen: tuple[str, str] | None = None  # (table, where) of the first record naming one
        self.matched = False  # a record of --table was met
        self.others: set[str] = set()  # the other tables met (a few names: bounded by them)

    def wanted(self, change: Change) -> bool:
        name = change.table
        if name is None:
            return True
        if self.table is not None:
            if name == self.table:
                self.matched = True
                return True
            self.others.add(name)
            return False
        if self.seen is None:
            self.seen = (name, change.where)
        elif name != self.seen[0]:
            raise MixedTables(
                f"the records are of more than one table: {self.seen[0]} ({self.seen[1]}) and "
                f"{name} ({change.where}); say which with --table"
            )
        return True


def _report(n: int, show: int, where: str, reason: str) -> None:
    if n <= show:
        print(f"ddbshard keys: malformed record: {where}: {reason}", file=sys.stderr)


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat(timespec="milliseconds")


class _Ticker:
    """A progress line on stderr: every 0.5 s on a terminal, every 10 s in a log."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = self.last = time.monotonic()

    def tick(self, records: int, keys: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        rate = records / max(now - self.start, 1e-9)
        line = f"{records:,} records, {keys:,} distinct keys, {rate:,.0f} records/s"
        print(line, end="\r" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty and self.last > self.start:
            print(file=sys.stderr)
