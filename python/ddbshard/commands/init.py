"""`init`: write a config whose one target recreates a table, and optionally start its export.

The table's metadata comes from the live table (DescribeTable, DescribeTimeToLive,
ListTagsOfResource, DescribeContinuousBackups) or from the AWS CLI's JSON output of those calls,
for users who cannot reach the table from this machine. The translation itself is
aws/tableconfig.py's, the AWS calls and the export aws/export.py's; this module writes the file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ddbshard.aws.export import (
    arn_region,
    dynamodb_client,
    fetch_table_info,
    parse_time,
    run_export,
)
from ddbshard.aws.tableconfig import (
    TableInfo,
    TableSpec,
    check_config,
    default_table_name,
    info_from_json,
    render_config,
    table_spec,
    target_name,
)
from ddbshard.exceptions import ConfigError
from ddbshard.io.storage import (
    check_local_output,
    split_s3_uri,
)

POLL_SECONDS = 20.0  # DescribeExport: a full export takes minutes to hours; no need to ask more
QUIET_LOG_SECONDS = 60.0  # without a terminal, one progress line a minute keeps logs readable


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-table", metavar="TABLE", help="read the live table (name or ARN)")
    src.add_argument(
        "--from-json",
        nargs="+",
        metavar="FILE",
        help="the AWS CLI's output of describe-table, and optionally of describe-time-to-live, "
        "list-tags-of-resource and describe-continuous-backups (any order)",
    )
    p.add_argument("--region", help="the table's Region (default: from the AWS environment)")
    p.add_argument("--out", default="split.toml", help="config file to write (default split.toml)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--table-name", help="name of the table to create (default: <table>-new)")
    p.add_argument("--source", help="the export root to put in the config")
    p.add_argument("--dest", help="where split will write the shards (s3://bucket/prefix/)")
    p.add_argument(
        "--export",
        metavar="S3_URI",
        help="start a full export (DYNAMODB_JSON) to s3://bucket/prefix, wait for it, and put "
        "its root in the config; needs point-in-time recovery on the table",
    )
    p.add_argument(
        "--export-time",
        metavar="TIME",
        help="point in time to export (ISO 8601, e.g. 2026-11-23T10:00:00Z, or epoch seconds; "
        "default: now)",
    )
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=POLL_SECONDS,
        help=f"seconds between DescribeExport calls (default {POLL_SECONDS:g})",
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    # Checked first: nothing (above all no export, which is billed) starts for a file that
    # would then not be written.
    if out.exists() and not args.force:
        raise ConfigError(f"{out}: already exists; pass --force to replace it")
    check_local_output(args.out, "--out", file=True)
    if args.export_time and not args.export:
        raise ConfigError("--export-time needs --export s3://bucket/prefix")
    if args.source and args.export:
        raise ConfigError("give --source or --export, not both (--export fills in the source)")
    export_time = parse_time(args.export_time) if args.export_time else None
    if args.export:
        try:
            split_s3_uri(args.export)
        except ValueError as e:
            raise ConfigError(f"--export: {e}") from None
        # An export writes <prefix>/AWSDynamoDB/<id>/; a prefix of its own keeps it findable.

    if args.from_json:
        info = info_from_json(args.from_json)
        client = None
    else:
        client = dynamodb_client(args.region)
        info = fetch_table_info(client, args.from_table)
    spec = table_spec(info)
    table_name = args.table_name or default_table_name(spec)

    # Render and check before exporting, so a table the config cannot express fails for free.
    text = render_config(spec, table_name=table_name, source=args.source, dest=args.dest)
    check_config(text, info, table_name)

    if args.export:
        if client is None:
            client = dynamodb_client(args.region or arn_region(spec.arn))
        source, note = run_export(client, spec, args.export, export_time, args.poll_seconds)
        text = render_config(
            spec, table_name=table_name, source=source, dest=args.dest, export_note=note
        )
        check_config(text, info, table_name)

    _write(out, text)
    _report(out, spec, table_name, info)
    return 0


def _write(out: Path, text: str) -> None:
    """Written whole or not at all: a temporary file beside it, then renamed over it."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{out}: cannot write: {e.strerror or e}") from e


def _report(out: Path, spec: TableSpec, table_name: str, info: TableInfo) -> None:
    gsis = sum(1 for ix in spec.indexes if not ix.was_lsi)
    lsis = len(spec.indexes) - gsis
    parts = [f"{gsis} GSI{'s' if gsis != 1 else ''}"]
    if lsis:
        parts.append(f"{lsis} LSI{'s' if lsis != 1 else ''} as GSI{'s' if lsis != 1 else ''}")
    parts.append(f"stream {spec.stream or 'off'}")
    parts.append(f"TTL {spec.ttl or 'off'}" if spec.ttl_known else "TTL unknown")
    n_tags = len(spec.tags)
    parts.append(f"{n_tags} tag{'' if n_tags == 1 else 's'}" if spec.tags_known else "tags unknown")
    pitr = {True: "on", False: "off", None: "unknown"}[spec.pitr]
    parts.append(f"PITR {pitr}")
    target = target_name(spec)
    print(f"wrote {out}: target {target} -> new table {table_name} ({', '.join(parts)})")
    for note in info.notes:
        print(f"  not read: {note}")
    for item in spec.not_carried:
        print(f"  not reproduced: {item}")
