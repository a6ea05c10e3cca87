"""The commands of the CLI: one module each, found through one table.

Every command module has the same shape: `add_arguments(parser)` declares its arguments,
`run(args) -> int` does the work and returns the exit status. Only the module of the command
being run is imported (`cli.build_parser`), and a module imports its engine (polars, pyarrow,
boto3: half a second or more) inside `run`, so `split` and its workers never pay for `diff`.
The engines live with their stage (split/, catchup/, compare/, aws/), not here.
"""

from __future__ import annotations

import argparse
import importlib
import math
from types import ModuleType

# name -> (module under ddbshard.commands, one line of help); listed in the order of a
# migration.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "write a config whose target recreates a table; export it"),
    "estimate": ("estimate", "what the migration will cost and write, from the export"),
    "split": ("split", "route, transform and shard an export (the main job)"),
    "finalize": ("finalize", "join the nodes of an array-job split (after all ran)"),
    "import": ("importcmd", "create the target tables from the shards with ImportTable"),
    "keys": ("keys", "list the keys changed in a time window"),
    "sync": ("sync", "write the current state of changed keys to the target tables"),
    "replicate": ("replicate", "tail the source's stream and apply every change to the targets"),
    "parquet": ("parquet", "turn DynamoDB-JSON lines into a Parquet dataset"),
    "diff": ("diff", "compare what the targets should hold with what they hold"),
    "validate": ("validate", "check DynamoDB-JSON line files against DynamoDB's rules"),
    "demo": ("demo", "run the main job on an export shipped in the package"),
}


def load(name: str) -> ModuleType:
    """The module of command `name` (its `add_arguments` and `run`)."""
    return importlib.import_module(f"ddbshard.commands.{COMMANDS[name][0]}")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 1")
    return n


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 0")
    return n


MAX_WORKERS = 256


def worker_count(text: str) -> int:
    """An argparse type: threads (and a live table's default scan segments), 1 to MAX_WORKERS."""
    n = positive_int(text)
    if n > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{n}: at most {MAX_WORKERS}")
    return n


def capacity_rate(text: str) -> float:
    """An argparse type: --max-wcu/--max-rcu, capacity units per second, at least 1 (the
    smallest capacity DynamoDB provisions). NaN slipped past a `<= 0` check, and a rate near
    0 made the first wait too long for time.sleep: both were tracebacks mid-run."""
    return _finite_from(text, 1, "units per second, 1 or more")


def seconds_or_more(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more (finite)."""
    return _finite_from(text, 0, "seconds, 0 or more")


def _finite_from(text: str, low: float, what: str) -> float:
    """`text` as a finite number of at least `low`, else argparse's error saying `what`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not low <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: must be a number of {what}")
    return value


def change_time(text: str) -> int:
    """An argparse type: --since/--until as ISO 8601 or epoch seconds, ms or µs; µs since the
    epoch (the catch-up's one reading of times, imported only by the commands using it)."""
    from ddbshard.catchup.changes import RecordError, parse_time

    try:
        return parse_time(text)
    except RecordError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a live table's Scan, for parquet and diff alike."""
    p.add_argument(
        "--segments",
        type=positive_int,
        help="a dynamodb:// table's parallel Scan segments (default: one per GB of the "
        "table, at least one per worker)",
    )
    p.add_argument(
        "--max-rcu",
        type=capacity_rate,
        metavar="N",
        help="read units per second a dynamodb:// scan may consume (default: no limit)",
    )
    p.add_argument(
        "--consistent",
        action="store_true",
        help="strongly consistent Scan (twice the read units)",
    )
