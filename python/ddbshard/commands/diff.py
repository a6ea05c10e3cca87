"""`diff CONFIG --actual T=URI ...`: what each target should hold against what it holds.

The work is diffrun.py; this module parses the arguments and prints the report.
"""

from __future__ import annotations

import argparse
import posixpath
from typing import Any

from ddbshard.commands import add_scan_arguments, worker_count
from ddbshard.compare.diffrun import DiffOptions, DiffResult, run_diff
from ddbshard.compare.locations import live_table
from ddbshard.compare.sourcekey import parse_source_key
from ddbshard.config import load_config
from ddbshard.exceptions import ConfigError
from ddbshard.io.storage import check_local_output, check_output

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config (source, routing, targets)")
    p.add_argument(
        "--actual",
        action="append",
        metavar="T=URI",
        required=True,
        help="what target T holds: an export of its table, its shards (dest/T/data/), line "
        "files, a Parquet copy of them, or the table itself, dynamodb://TABLE (repeatable)",
    )
    p.add_argument(
        "--expected",
        action="append",
        metavar="T=URI",
        help="what T should hold, as a Parquet copy from `parquet --config C --target T` "
        "(default: the config's source through the routing)",
    )
    p.add_argument(
        "--source",
        help="read this instead of the config's source (DynamoDB-JSON lines, an export, a "
        "Parquet copy of the source table, or the live table, dynamodb://TABLE)",
    )
    p.add_argument("--out", help="where results go (default: <dest>/_diff/)")
    p.add_argument(
        "--source-key",
        metavar="HASH[,RANGE]",
        help="the source table's key attributes, which the keys files name source items by "
        "(default: the attributes the targets' keys are kept or renamed from)",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=20,
        help="changed items per target whose differing attributes are named (default 20)",
    )
    p.add_argument(
        "--work-dir",
        help="keep the Parquet copies made from lines here, for reuse with --expected "
        "(default: a temporary folder, removed at the end)",
    )
    p.add_argument(
        "--workers",
        type=worker_count,
        help="threads reading input files at once (default: one per CPU, at most 8)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_scan_arguments(p)


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, uri = v.partition("=")
        if not sep or not name or not uri:
            raise ConfigError(f"{flag} {v!r}: write TARGET=URI")
        if name in out:
            raise ConfigError(f"{flag}: target {name} is given twice")
        out[name] = uri
    return out


def run(args: Any) -> int:
    source_key = parse_source_key(args.source_key) if args.source_key else None
    if args.sample < 0:
        raise ConfigError("--sample: at least 0")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers: at least 1")
    options = DiffOptions(
        actual=_pairs(args.actual, "--actual"),
        expected=_pairs(args.expected, "--expected"),
        source=args.source,
        out=args.out,
        source_key=source_key,
        sample=args.sample,
        work_dir=args.work_dir,
        quiet=args.quiet,
        workers=args.workers,
        segments=args.segments,
        max_rcu=args.max_rcu,
        consistent=args.consistent,
    )
    if args.out and live_table(args.out, "--out") is not None:
        raise ConfigError(f"--out {args.out}: results are files (a folder, local or s3://)")
    config = load_config(args.config)
    # Before any input is read: the results are written last, after the whole join.
    check_output(args.out or posixpath.join(config.dest.rstrip("/"), "_diff"), "--out")
    if args.work_dir:
        check_local_output(args.work_dir, "--work-dir")
    result = run_diff(config, options)
    _report(result)
    return result.exit_code


def _report(result: DiffResult) -> None:
    s = result.summary
    for name, t in s["targets"].items():
        print(
            f"{name}: expected {t['expected']['items']:,}, actual {t['actual']['items']:,}: "
            f"matched {t['matched']:,}, missing {t['missing']:,}, "
            f"unexpected {t['unexpected']:,}, changed {t['changed']:,}"
        )
        if t["changed_attributes"]:
            shown = ", ".join(f"{a} ({n})" for a, n in t["changed_attributes"].items())
            print(f"  attributes that differ in the sample of changed items: {shown}")
        if t["actual"]["rejected"]:
            print(f"  {t['actual']['rejected']:,} lines of the actual side were refused")
        if t["missing"] or t["changed"] or t["unexpected"]:
            if not t["source_keys"]:
                print(f"  {t['source_key_note']}")
            print(
                f"  keys for sync: {', '.join(t['files'][k] for k in t['files'])} under "
                f"{result.out}"
            )
    print(
        f"{'identical' if s['identical'] else 'differences found'} "
        f"({s['seconds']:.1f} s); summary: {result.out.rstrip('/')}/diff-summary.json"
    )
