"""`parquet SRC DEST`: DynamoDB-JSON lines (an export, shards, line files) to a Parquet copy.

    parquet SRC DEST                                  every item, no key columns
    parquet SRC DEST --key pk:S --key sk:N            every item, with these key columns
    parquet SRC DEST --config C --target T            what T should contain: SRC through T's
                                                      routing and transforms, T's key columns
    parquet SRC DEST --config C --target T --no-route SRC already holds T's items (its shards,
                                                      an export of table T): T's key columns
    parquet dynamodb://TABLE DEST [--max-rcu N]       a live table, by a parallel Scan; keyed
                                                      by its key schema unless told otherwise

The copy itself is parquetcopy.py; this module checks the arguments and reports.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import sys
from typing import Any

from ddbshard.commands import add_scan_arguments, worker_count
from ddbshard.compare.livescan import LiveScan
from ddbshard.compare.locations import live_table
from ddbshard.compare.parquetcopy import (
    CopyOutput,
    CopyResult,
    Keys,
    default_workers,
    make_copies,
    target_keys,
)
from ddbshard.compare.sourcekey import parse_source_key, resolve_source_key, table_source_key
from ddbshard.config import SplitConfig, load_config
from ddbshard.exceptions import ConfigError, InputError
from ddbshard.io.storage import (
    check_local_output,
    check_output,
    describe_os_error,
    is_s3,
    url_to_fs,
)

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src",
        help="an export root, a target's shards (T/data/), line files or a folder of them, or "
        "a Parquet copy of the source; local or s3://; or a live table, dynamodb://TABLE",
    )
    p.add_argument("dest", help="the Parquet dataset folder to write (local or s3://)")
    p.add_argument("--config", help="a migration config: with --target, route SRC through it")
    p.add_argument("--target", help="the config's target whose items (and key) the copy holds")
    p.add_argument(
        "--no-route",
        action="store_true",
        help="SRC already holds the target's items: take its key columns, do not route",
    )
    p.add_argument(
        "--source-key",
        metavar="HASH[,RANGE]",
        help="with --config: the source table's key attributes, kept beside each row for diff "
        "(default: the attributes the targets' keys are kept or renamed from)",
    )
    p.add_argument(
        "--key",
        action="append",
        metavar="ATTR:TYPE",
        help="a key column without a config (TYPE S, N or B; hash key first; repeatable)",
    )
    p.add_argument(
        "--flatten",
        action="store_true",
        help="add a column per top-level attribute whose type is the same in every item",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a copy already in DEST")
    p.add_argument(
        "--workers",
        type=worker_count,
        help="threads reading input files at once (default: one per CPU, at most 8)",
    )
    p.add_argument("--work-dir", help="local folder for --flatten's staging (default: temp)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_scan_arguments(p)


def parse_key_args(values: list[str]) -> Keys:
    keys = []
    for v in values:
        name, sep, t = v.rpartition(":")
        if not sep or not name or t not in ("S", "N", "B"):
            raise ConfigError(f"--key {v!r}: write ATTRIBUTE:TYPE with TYPE S, N or B")
        keys.append((name, t))
    if len(keys) > 2:
        raise ConfigError("--key: a DynamoDB key has at most two attributes (hash, range)")
    return tuple(keys)


def _workers(n: int | None) -> int | None:
    if n is not None and n < 1:
        raise ConfigError("--workers: at least 1")
    return n


def _config_target(args: Any) -> tuple[SplitConfig | None, str | None]:
    if args.config is None:
        if args.target or args.no_route or args.source_key:
            raise ConfigError("--target, --no-route and --source-key need --config")
        return None, None
    if args.key:
        raise ConfigError("--key and --config do not go together: the config names the keys")
    if args.source_key and args.no_route:
        raise ConfigError("--source-key is for routed copies: not with --no-route")
    config = load_config(args.config)
    if args.target is None:
        if len(config.targets) != 1:
            names = ", ".join(t.name for t in config.targets)
            raise ConfigError(f"--target: the config has several targets ({names}); name one")
        return config, config.targets[0].name
    for t in config.targets:
        if args.target in (t.name, t.table.table_name):
            return config, t.name
    names = ", ".join(t.name for t in config.targets)
    raise ConfigError(f"--target {args.target}: no such target in {args.config} ({names})")


def live_scan(url: str, what: str, args: Any) -> LiveScan | None:
    """The scan of `url` when it names a live table (dynamodb://TABLE), with the command's
    scan options; None for files (refusing a scheme nothing reads)."""
    table = live_table(url, what)
    if table is None:
        return None
    return LiveScan(
        table,
        segments=args.segments,
        workers=args.workers or default_workers(),
        max_rcu=args.max_rcu,
        consistent=args.consistent,
    )


def run(args: Any) -> int:
    scan = live_scan(args.src, "SRC", args)
    if live_table(args.dest, "DEST") is not None:
        raise ConfigError(
            f"DEST {args.dest}: a copy is written as Parquet files (a folder, local or s3://), "
            "not into a table"
        )
    if scan is None and (args.segments or args.max_rcu is not None or args.consistent):
        raise ConfigError("--segments, --max-rcu and --consistent are for SRC dynamodb://TABLE")
    config, target_name = _config_target(args)
    # Before any input is read: a copy that cannot be written would fail at its first file.
    check_output(args.dest, "DEST")
    if args.work_dir:
        check_local_output(args.work_dir, "--work-dir")
    if config is not None and target_name is not None:
        target = next(t for t in config.targets if t.name == target_name)
        keys = target_keys(target)
    elif args.key or scan is None:
        keys = parse_key_args(args.key or [])
    else:
        keys = scan.describe().keys  # a live table knows its key
    routing = None if args.no_route else config
    source_key = None
    if routing is not None:
        given = parse_source_key(args.source_key) if args.source_key else None
        if scan is not None:
            # A live source knows its key: the config's guess (or nothing, when every
            # target's key is a template) must not stand in for it.
            known = tuple(k for k, _ in scan.describe().keys)
            source_key = table_source_key(known, given, scan.url)
        else:
            found = resolve_source_key(routing, given)
            source_key = found.names
            if source_key is None:
                # The copy is still what T should contain; only diff's keys files need the
                # column.
                print(
                    f"ddbshard: no source_key column: {found.note}; give --source-key for diff "
                    "to name the source items of missing and changed items",
                    file=sys.stderr,
                )
    if scan is not None:
        print(scan.estimate_line(), file=sys.stderr)
    out = CopyOutput(args.dest, keys, target_name, flatten=args.flatten)
    result = make_copies(
        scan or args.src,
        [out],
        config=routing,
        overwrite=args.overwrite,
        quiet=args.quiet,
        work_dir=args.work_dir,
        workers=_workers(args.workers),
        source_key=source_key,
    )
    summary = _summary(args, out, result, routed=routing is not None)
    if scan is not None:
        summary["scan"] = scan.summary()
    summary["source_key"] = list(source_key) if source_key else None
    _write_summary(args.dest, summary)
    _report(out, result, summary)
    return 1 if out.rejected else 0


def _summary(args: Any, out: CopyOutput, result: CopyResult, *, routed: bool) -> dict[str, Any]:
    seconds = max(result.seconds, 1e-9)
    return {
        "source": args.src,
        "dest": args.dest,
        "config": args.config,
        "target": out.target,
        "routed": routed,
        "keys": [list(k) for k in out.keys],
        "files": out.files,
        "items": {
            "read": result.read,
            "written": out.rows,
            "rejected": out.rejected,
            "unmatched_or_other_targets": result.read - out.rows - out.rejected if routed else 0,
        },
        "rejected_by_reason": out.reasons,
        "bytes_in": result.bytes_in,
        "seconds": round(result.seconds, 3),
        "items_per_second": round(result.read / seconds),
        "flattened": out.flattened,
        "not_flattened": out.not_flattened,
        "hash": "xxh3_64 (seed 0) of the item column's UTF-8 bytes, as int64 bits",
    }


def _write_summary(dest: str, summary: dict[str, Any]) -> None:
    fs, path = url_to_fs(dest)
    target = posixpath.join(path.rstrip("/"), "_summary.json")
    try:
        if not is_s3(dest):
            fs.makedirs(path, exist_ok=True)
        with fs.open(target, "wb") as f:
            f.write((json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    except OSError as e:
        raise InputError(f"{dest}: cannot write _summary.json: {describe_os_error(e)}") from e


def _report(out: CopyOutput, result: CopyResult, summary: dict[str, Any]) -> None:
    print(
        f"read {result.read:,} items in {result.seconds:.1f} s "
        f"({summary['items_per_second']:,} items/s, "
        f"{result.bytes_in / 2**20 / max(result.seconds, 1e-9):,.0f} MB/s): "
        f"{out.rows:,} rows in {len(out.files)} files, {out.rejected:,} rejected"
    )
    scan = summary.get("scan")
    if scan:
        print(
            f"  scan of {scan['table']}: {scan['segments']:,} segments, {scan['pages']:,} pages, "
            f"{scan['consumed_read_units']:,.1f} read units consumed"
        )
    if summary.get("source_key"):
        names = ", ".join(summary["source_key"])
        print(f"  source_key column: the key of each row's source item ({names})")
    if out.flattened:
        print(f"  flattened {len(out.flattened)} attributes: {', '.join(out.flattened)}")
    if out.not_flattened:
        print(f"  not flattened (mixed types): {', '.join(out.not_flattened)}")
    if out.rejected:
        print(f"  rejects by reason: {json.dumps(out.reasons)}")
        print(
            "ddbshard: some lines were not copied: see _rejects/rejects.jsonl in the destination",
            file=sys.stderr,
        )
    print(f"output: {out.dest} (part-*.parquet, _summary.json)")
