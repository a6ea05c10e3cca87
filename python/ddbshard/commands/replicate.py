"""`replicate CONFIG --source-table A`: tail A's DynamoDB stream and apply every change to the
targets, from a checkpoint, until stopped (Ctrl-C, SIGTERM) or, with --until-caught-up, drained.

Checks before the first write as sync does (the config, every target table's key, the stream);
then the loop of ddbshard.catchup.replicator: batches of records read from the shards (parents
first), each applied with sync's engine and then committed to the checkpoint.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from ddbshard.catchup.changes import RecordError, parse_time
from ddbshard.commands import capacity_rate, change_time, positive_int, seconds_or_more

__all__ = ["add_arguments", "run"]

DEFAULT_FAILED = "replicate-failed-keys.jsonl"
POLL_SECONDS = 1.0  # between passes that found the stream drained: AWS allows ~5 calls/s/shard


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config (its routing and transforms)")
    p.add_argument(
        "--source-table", metavar="A", required=True, help="the table whose stream to tail"
    )
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="where the stream position is kept (local or s3://; default "
        "A.replicate-checkpoint.json); an existing one always wins over --from",
    )
    p.add_argument(
        "--from",
        dest="start",
        choices=("trim-horizon", "latest"),
        default="trim-horizon",
        help="where a new checkpoint starts: the oldest record the stream holds (default), or "
        "after the newest",
    )
    p.add_argument(
        "--since",
        type=change_time,
        help="the time the targets hold A's state of (default: the exportTime of the config's "
        "source export): a new checkpoint refuses to start when records since then may be trimmed",
    )
    p.add_argument(
        "--until-caught-up",
        nargs="?",
        const=0.0,
        type=seconds_or_more,
        metavar="SECONDS",
        help="exit 0 once every shard is drained and the newest record applied is at most "
        "SECONDS old (default 0: a pass that finds nothing new)",
    )
    p.add_argument(
        "--max-wcu",
        type=capacity_rate,
        help="write capacity units per second to use at most (default: no limit)",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        help="BatchGetItem/BatchWriteItem calls in flight at once (default 16)",
    )
    p.add_argument(
        "--failed-keys",
        default=DEFAULT_FAILED,
        help=f"where keys that could not be applied go, as a keys file (default {DEFAULT_FAILED})",
    )
    p.add_argument(
        "--batch-records",
        type=positive_int,
        default=2000,
        help="records per batch: applied, then checkpointed (default 2000)",
    )
    p.add_argument("--region", help="AWS region (default: from the environment)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


class _Stopped(BaseException):
    """SIGINT or SIGTERM: the loop stops where it is; the checkpoint holds every applied batch."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def run(args: Any) -> int:
    from ddbshard.catchup.dynamo import Budget, Dynamo, RetryPolicy, client
    from ddbshard.catchup.replicator import Replicator, with_images
    from ddbshard.catchup.routing import Router
    from ddbshard.catchup.streams import (
        Checkpoint,
        StreamReader,
        Trimmed,
        lock_checkpoint,
        resolve_stream,
        streams_client,
    )
    from ddbshard.catchup.syncrun import SyncRun, check_target_tables
    from ddbshard.config import load_config
    from ddbshard.io.storage import check_output

    config = load_config(args.config)
    router = Router(config)
    budget = Budget(args.max_wcu) if args.max_wcu else None
    ddb = client(args.region, args.concurrency)
    dynamo = Dynamo(ddb, RetryPolicy(), budget, args.concurrency)
    check_target_tables(router, dynamo, args.config)
    source_key = tuple(name for name, _ in dynamo.key_schema(args.source_table))
    arn = resolve_stream(ddb, args.source_table)
    # Before anything is read or written: one run per checkpoint (the lock also makes its
    # folder), and a failed-keys file that can be written.
    check_output(args.failed_keys, "--failed-keys", file=True)
    location = args.checkpoint or f"{args.source_table}.replicate-checkpoint.json"
    lock_checkpoint(location)
    checkpoint = Checkpoint.load(location, arn)
    since = None
    if not checkpoint.existed and args.start == "trim-horizon":
        since = args.since if args.since is not None else _export_time(config.source)
    reader = StreamReader(streams_client(args.region), checkpoint, since=since, start=args.start)
    reader.describe()  # the view type, and a wrong ARN found before anything runs
    images = with_images(reader.view_type)
    # With both images the records say everything; otherwise each key's item is read from A.
    sync = SyncRun(
        router,
        dynamo,
        None if images else args.source_table,
        source_key,
        concurrency=args.concurrency,
    )
    replicator = Replicator(
        reader, sync, router, failed_keys=args.failed_keys, batch_records=args.batch_records
    )
    show = _Show(replicator, enabled=not args.quiet)
    # Stopped inside the loop only: after it, the CLI's own handling (one line, 130 or 143).
    previous = signal.signal(signal.SIGINT, _stop), signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            replicator.run_pass(show.tick)
            if args.until_caught_up is not None and replicator.caught_up(args.until_caught_up):
                break
            time.sleep(POLL_SECONDS)
    except _Stopped as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no traceback either
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        show.final()
        name = "SIGTERM" if e.signum == signal.SIGTERM else "SIGINT"
        print(
            f"ddbshard replicate: stopped by {name}; {checkpoint.url} holds every applied batch "
            "(run again to continue)",
            file=sys.stderr,
        )
        return 143 if e.signum == signal.SIGTERM else 130
    except Trimmed as e:
        trimmed: Trimmed | None = e
    else:
        trimmed = None
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    show.final()
    if trimmed is not None:
        print(f"ddbshard: error: {trimmed}", file=sys.stderr)
        return 1
    from ddbshard.catchup.replicator import unlocatable_note

    note = None if images else unlocatable_note(router, replicator.first_without_old)
    if note:
        print(note, file=sys.stderr)
    failed = len(sync.failed_lines)
    if failed:
        # The file also keeps what earlier runs listed: say so, or the counts seem not to match.
        earlier = replicator.earlier_failed
        more = (
            f"; with {earlier:,} from earlier runs it lists {earlier + failed:,}" if earlier else ""
        )
        print(f"keys not applied ({failed:,}): {args.failed_keys}{more}", file=sys.stderr)
    return 1 if failed or replicator.counts.malformed else 0


def _export_time(source: str) -> int | None:
    """The exportTime of the config's source, when it is an export root; None (with a note)
    when there is none, which leaves the trimming check to --since."""
    from ddbshard.exceptions import InputError
    from ddbshard.io.source import resolve_source

    try:
        summary = resolve_source(source).summary or {}
    except InputError:
        summary = {}
    when = summary.get("exportTime")
    if isinstance(when, str):
        try:
            return parse_time(when)
        except RecordError:
            pass
    print(
        f"note: {source} gives no exportTime and no --since was given: whether the stream still "
        "holds every record since the export cannot be checked",
        file=sys.stderr,
    )
    return None


class _Show:
    """The status line on stderr: every second on a terminal, every 5 s in a log, and at the end."""

    def __init__(self, replicator: Any, *, enabled: bool) -> None:
        self.replicator = replicator
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = self.last = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < (1.0 if self.tty else 5.0):
            return
        self.last = now
        line = "replicate: " + self.replicator.status(now - self.start)
        print(line, end="\r" if self.tty else "\n", file=sys.stderr, flush=True)

    def final(self) -> None:
        line = "replicate: " + self.replicator.status(time.monotonic() - self.start)
        print(("\n" if self.enabled and self.tty else "") + line, file=sys.stderr, flush=True)
