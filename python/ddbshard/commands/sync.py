"""`sync CONFIG`: bring the target tables up to date for the keys that changed since the export.

Two ways to say what changed:

    sync CONFIG --keys KEYS --source-table A     keys from `keys` or `diff`; items read from A
    sync CONFIG --from incremental EXPORT...     the items an incremental export holds

Everything that can be checked before a write is checked first (the config, the key schemas of
the source and every target table against the config, the inputs), so a wrong table or config
stops the run with one line before anything is written. The loop itself is ddbshard.catchup.syncrun.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ddbshard.catchup.changefiles import Malformed, read_changes
from ddbshard.catchup.changes import UNKNOWN
from ddbshard.catchup.dynamo import Budget, Dynamo, RetryPolicy, client
from ddbshard.catchup.keysfile import KeyCollector, KeyEntry, read_keys, write_lines
from ddbshard.catchup.routing import Router
from ddbshard.catchup.syncrun import SyncRun, Tally, check_target_tables
from ddbshard.commands import capacity_rate, positive_int
from ddbshard.config import load_config
from ddbshard.exceptions import ConfigError, InputError, Terminated
from ddbshard.io.storage import check_output, describe_os_error, url_to_fs

__all__ = ["add_arguments", "run"]

DEFAULT_FAILED = "sync-failed-keys.jsonl"
SHOW_MALFORMED = 10  # malformed input lines named on stderr; the rest are counted
MAX_CONCURRENCY = 256  # threads, each with its connection: more only queues in the pool


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config (its routing and transforms)")
    p.add_argument(
        "--keys", action="append", metavar="KEYS", help="a keys file from keys or diff (repeatable)"
    )
    p.add_argument("--source-table", metavar="A", help="the source table the keys belong to")
    p.add_argument(
        "--from",
        dest="source",
        nargs="+",
        metavar=("incremental", "EXPORT"),
        help="apply incremental export(s) directly, newest write per key winning: NewImage is "
        "put, no NewImage is deleted",
    )
    p.add_argument(
        "--max-wcu",
        type=capacity_rate,
        help="write capacity units per second to use at most (default: no limit)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="read and plan, print the writes, write nothing"
    )
    p.add_argument(
        "--failed-keys",
        default=DEFAULT_FAILED,
        help=f"where keys that could not be synced go, as a keys file (default {DEFAULT_FAILED})",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=RetryPolicy.max_attempts,
        help="tries per request before its key counts as failed (default "
        f"{RetryPolicy.max_attempts}: about a minute of backoff)",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=SyncRun.concurrency,
        metavar="N",
        help=f"batch calls in flight at once, 1 to {MAX_CONCURRENCY} (default "
        f"{SyncRun.concurrency}); 1: one round of 100 keys after another",
    )
    p.add_argument("--region", help="AWS region (default: from the environment)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: Any) -> int:
    _check_usage(args)
    config = load_config(args.config)
    for url in args.keys or []:
        # The keys files are read as the rounds go: a file that cannot be opened would
        # otherwise stop the run after the `Target` lines of the files before it had
        # deleted their items.
        _check_readable(url)
    # Written at the end: a place that cannot take it would lose the list of failed keys.
    check_output(args.failed_keys, "--failed-keys", file=True)
    router = Router(config)
    budget = Budget(args.max_wcu) if args.max_wcu else None
    policy = RetryPolicy(max_attempts=args.max_attempts)
    dynamo = Dynamo(client(args.region, args.concurrency), policy, budget, args.concurrency)
    check_target_tables(router, dynamo, args.config)
    source_key: tuple[str, ...] = ()
    if args.source_table:
        source_key = tuple(name for name, _ in dynamo.key_schema(args.source_table))
    malformed: list[Malformed] = []
    if args.inputs:
        entries: Iterable[KeyEntry] = _from_export(args.inputs, malformed)
    else:
        entries = _from_keys(args.keys, malformed)
    run = SyncRun(
        router,
        dynamo,
        args.source_table,
        source_key,
        dry_run=args.dry_run,
        concurrency=args.concurrency,
    )
    progress = _Progress(run.tally, enabled=not args.quiet)
    started = time.monotonic()
    try:
        run.run(progress.follow(entries))
    except (KeyboardInterrupt, Terminated) as stop:
        # The rounds under way have finished and are counted: say what was done. The
        # failed-keys file is left alone: it may be the very keys file being read.
        progress.close()
        seconds = time.monotonic() - started
        _summary(run.tally, router, dynamo, seconds, args, len(malformed), 0, interrupted=True)
        print(
            f"ddbshard sync: interrupted after {run.tally.keys:,} keys (counted above); "
            "run it again with the same keys to finish",
            file=sys.stderr,
        )
        return 143 if isinstance(stop, Terminated) else 130
    progress.close()
    for m in malformed[:SHOW_MALFORMED]:
        print(f"ddbshard sync: malformed: {m.where}: {m.reason}", file=sys.stderr)
    if len(malformed) > SHOW_MALFORMED:
        more = len(malformed) - SHOW_MALFORMED
        print(f"ddbshard sync: ... and {more:,} more malformed input lines", file=sys.stderr)
    if run.failed_lines and not args.dry_run:  # a dry run writes nothing, this file included
        write_lines(args.failed_keys, run.failed_lines)
    seconds = time.monotonic() - started
    _summary(run.tally, router, dynamo, seconds, args, len(malformed), len(run.failed_lines))
    _warn_unlocatable(router, progress)
    return 1 if run.failed_lines or malformed else 0


def _check_usage(args: Any) -> None:
    if args.source:
        kind, *args.inputs = args.source
        if kind != "incremental" or not args.inputs:
            raise _Usage(
                "--from takes 'incremental' and then the export(s): --from incremental EXPORT"
            )
        if args.keys or args.source_table:
            raise _Usage(
                "--from incremental applies the export's items: no --keys, no --source-table"
            )
    else:
        args.inputs = []
        if not args.keys or not args.source_table:
            raise _Usage("give --keys KEYS and --source-table A (or --from incremental EXPORT)")
    if args.max_attempts < 1:
        raise _Usage("--max-attempts must be at least 1")
    if args.concurrency > MAX_CONCURRENCY:
        raise _Usage(f"--concurrency: {args.concurrency}: at most {MAX_CONCURRENCY}")


def _check_readable(url: str) -> None:
    fs, path = url_to_fs(url)
    try:
        fs.open(path, "rb").close()
    except OSError as e:
        raise InputError(f"{url}: cannot open: {describe_os_error(e)}") from e


class _Usage(ConfigError):
    """A bad combination of arguments (exit 2, like any error found before work starts)."""


def _from_keys(files: list[str], malformed: list[Malformed]) -> Iterator[KeyEntry]:
    # Two passes: the target lines first (see syncrun), then the source keys.
    for url in files:
        for e in read_keys(url):
            if isinstance(e, Malformed):
                malformed.append(e)
            elif e.target is not None:
                yield e
    for url in files:
        for e in read_keys(url):
            if isinstance(e, KeyEntry) and e.target is None:
                yield e


def _from_export(inputs: list[str], malformed: list[Malformed]) -> list[KeyEntry]:
    # All of it first: newest write per key wins across files and exports.
    collector = KeyCollector()
    for change in read_changes(inputs, "incremental"):
        if isinstance(change, Malformed):
            malformed.append(change)
            continue
        if change.problem is not None:  # kept: the key then fails, it is not skipped
            malformed.append(Malformed(change.where, change.problem))
        collector.add(change)
    return collector.entries()


def _summary(
    tally: Tally,
    router: Router,
    dynamo: Dynamo,
    seconds: float,
    args: Any,
    malformed: int,
    not_synced: int,
    *,
    interrupted: bool = False,
) -> None:
    verb = "would put" if args.dry_run else "put"
    how = " (dry run: nothing written)" if args.dry_run else ""
    how += " (interrupted)" if interrupted else ""
    print(
        f"sync{how}: {tally.keys:,} keys in "
        f"{seconds:.1f} s: read {tally.read:,} (gone from the source {tally.gone:,}), "
        f"{verb} {tally.put:,}, deleted {tally.deleted:,}, unchanged {tally.unchanged:,}, "
        f"failed {tally.failed:,}"
    )
    for table, c in sorted(tally.per_table.items()):
        print(
            f"  {table}: put {c['put']:,}, deleted {c['deleted']:,}, unchanged {c['unchanged']:,}"
        )
    if tally.unmatched:
        print(f"  matching no target: {tally.unmatched:,} (unmatched = {router.policy!r})")
    if tally.rejected:
        print(f"  rejected by a target: {tally.rejected:,}")
    s = dynamo.stats
    line = f"  {s.calls:,} calls, {s.retried:,} requests retried"
    if dynamo.budget is not None:
        line += f", {dynamo.budget.waited:.1f} s waited for the --max-wcu budget"
    print(line)
    if malformed:
        print(f"  malformed input lines skipped: {malformed:,}")
    if not_synced and args.dry_run:
        print(f"keys that would not be synced: {not_synced:,} ({args.failed_keys} not written)")
    elif not_synced:
        print(f"keys not synced ({not_synced:,}): {args.failed_keys}")


def _warn_unlocatable(router: Router, progress: _Progress) -> None:
    """Says when some old copies could not be looked for (README, "sync": what it cannot see)."""
    if progress.first is None or not progress.without_old:
        return
    elsewhere = router.keyed_elsewhere(progress.first.keys)
    if elsewhere:
        print(
            f"note: {progress.without_old:,} keys came without an OldImage, and "
            f"{', '.join(elsewhere)} build their keys from non-key attributes: a copy left there "
            "under an old key cannot be found from the key alone; run diff to find any",
            file=sys.stderr,
        )


class _Progress:
    """Counts entries as the loop takes them; a line on stderr every 0.5 s (terminal) or 10 s."""

    def __init__(self, tally: Tally, *, enabled: bool) -> None:
        self.tally = tally
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = self.last = time.monotonic()
        self.first: KeyEntry | None = None
        self.without_old = 0  # source keys whose state before the window is not known

    def follow(self, entries: Iterable[KeyEntry]) -> Iterator[KeyEntry]:
        for e in entries:
            if e.target is None:
                self.first = self.first or e
                self.without_old += e.old is UNKNOWN
            self._show()
            yield e

    def _show(self) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        t = self.tally
        rate = t.keys / max(now - self.start, 1e-9)
        line = (
            f"{t.keys:,} keys: put {t.put:,}, deleted {t.deleted:,}, unchanged {t.unchanged:,}, "
            f"failed {t.failed:,} ({rate:,.0f} keys/s)"
        )
        print(line, end="\r" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty and self.last > self.start:
            print(file=sys.stderr)
