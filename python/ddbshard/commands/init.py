"""`init`: write a config whose one target recreates a table, and optionally start its export.

The table's metadata comes from the live table (DescribeTable, DescribeTimeToLive,
ListTagsOfResource, DescribeContinuousBackups) or from the AWS CLI's JSON output of those calls,
for users who cannot reach the table from this machine. The translation itself is
tableconfig.py's; this module talks to AWS, follows the export and writes the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ddbshard.exceptions import ConfigError, InputError
from ddbshard.importspec import split_s3_uri
from ddbshard.storage import (
    NO_REGION,
    aws_setup_problem,
    botocore_config_kwargs,
    check_local_output,
)
from ddbshard.tableconfig import (
    TableInfo,
    TableSpec,
    check_config,
    default_table_name,
    info_from_json,
    render_config,
    table_spec,
    target_name,
)

POLL_SECONDS = 20.0  # DescribeExport: a full export takes minutes to hours; no need to ask more
QUIET_LOG_SECONDS = 60.0  # without a terminal, one progress line a minute keeps logs readable


def add_init_arguments(p: argparse.ArgumentParser) -> None:
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


def run_init(args: argparse.Namespace) -> int:
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
            client = dynamodb_client(args.region or _arn_region(spec.arn))
        source, note = run_export(client, spec, args.export, export_time, args.poll_seconds)
        text = render_config(
            spec, table_name=table_name, source=source, dest=args.dest, export_note=note
        )
        check_config(text, info, table_name)

    _write(out, text)
    _report(out, spec, table_name, info)
    return 0


# --- AWS calls -------------------------------------------------------------------------------


def dynamodb_client(region: str | None) -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.session.Session().client(
            "dynamodb", region_name=region, config=Config(**botocore_config_kwargs())
        )
    except BotoCoreError as e:  # NoRegionError is raised here, not at the first call
        raise _aws_error(e, "DynamoDB") from e


def _aws_error(e: Exception, what: str) -> InputError:
    """One line for a failed call: AWS's code and message, or what botocore could not do."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return InputError(f"{what}: {err.get('Code', 'error')}: {err.get('Message', '')}")
    problem = aws_setup_problem(e)  # what every command says (and the CLI prints alone)
    if problem == NO_REGION:
        return InputError(f"{problem}, or pass --region")
    if problem is not None:
        return InputError(problem)
    return InputError(f"{what}: {type(e).__name__}: {e}")


def fetch_table_info(client: Any, table: str) -> TableInfo:
    """The four describe calls. Only DescribeTable must succeed: without the right to read TTL,
    tags or backups the config says those are unknown (and why) instead of failing."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        desc = client.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError) as e:
        raise _aws_error(e, f"table {table}") from e
    notes: list[str] = []
    name = desc["TableName"]

    def optional(call: str, **kw: Any) -> Any:
        try:
            return getattr(client, call)(**kw)
        except ClientError as e:
            notes.append(str(_aws_error(e, call)))
            return None

    ttl = optional("describe_time_to_live", TableName=name)
    backups = optional("describe_continuous_backups", TableName=name)
    tags: list[dict[str, str]] | None = []
    kw: dict[str, Any] = {"ResourceArn": desc["TableArn"]}
    while tags is not None:
        page = optional("list_tags_of_resource", **kw)
        if page is None:
            tags = None
            break
        tags.extend(page.get("Tags", []))
        if not page.get("NextToken"):
            break
        kw["NextToken"] = page["NextToken"]
    return TableInfo(
        table=desc,
        ttl=ttl["TimeToLiveDescription"] if ttl else None,
        tags=tags,
        backups=backups["ContinuousBackupsDescription"] if backups else None,
        notes=tuple(notes),
    )


def run_export(
    client: Any,
    spec: TableSpec,
    s3_uri: str,
    export_time: datetime | None,
    poll_seconds: float,
) -> tuple[str, str]:
    """Starts a full export, follows it to the end, returns (export root, a note on it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if spec.pitr is False:
        raise InputError(_pitr_advice(spec.name))
    if not spec.arn:
        raise InputError(f"table {spec.name}: no TableArn in its description, cannot export it")
    bucket, prefix = split_s3_uri(s3_uri)
    request: dict[str, Any] = {
        "TableArn": spec.arn,
        "S3Bucket": bucket,
        "ExportFormat": "DYNAMODB_JSON",
        "ExportType": "FULL_EXPORT",
    }
    if prefix:
        request["S3Prefix"] = prefix.rstrip("/")
    if export_time is not None:
        request["ExportTime"] = export_time
    try:
        desc = client.export_table_to_point_in_time(**request)["ExportDescription"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "PointInTimeRecoveryUnavailableException":
            raise InputError(_pitr_advice(spec.name)) from e
        raise _aws_error(e, f"export of {spec.name}") from e
    except BotoCoreError as e:
        raise _aws_error(e, f"export of {spec.name}") from e
    arn = desc["ExportArn"]
    print(f"export started: {arn}", file=sys.stderr)
    try:
        desc = wait_for_export(client, arn, poll_seconds)
    except KeyboardInterrupt:
        print(
            f"\nthe export goes on in AWS: {arn}\n"
            f"its root will be {export_root(desc)} (run init again with --source <root>)",
            file=sys.stderr,
        )
        raise
    root = export_root(desc)
    items, billed = desc.get("ItemCount"), desc.get("BilledSizeBytes")
    when = desc.get("ExportTime")
    when_text = when.isoformat() if isinstance(when, datetime) else str(when or "now")
    note = f"Full export of {when_text}: {items} items, {billed} bytes billed ({arn})."
    _check_manifest(root)
    return root, note


def _pitr_advice(table: str) -> str:
    return (
        f"table {table}: point-in-time recovery is off, and ExportTableToPointInTime needs it. "
        f"Turn it on (aws dynamodb update-continuous-backups --table-name {table} "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true), "
        "then run init again; it is billed per GB-month while on"
    )


def wait_for_export(client: Any, arn: str, poll_seconds: float) -> dict[str, Any]:
    """DescribeExport until the export leaves IN_PROGRESS; a progress line on stderr (redrawn on
    a terminal, one a minute otherwise). FAILED is an InputError with AWS's reason."""
    from botocore.exceptions import BotoCoreError, ClientError

    tty = sys.stderr.isatty()
    start = time.monotonic()
    last_line = -QUIET_LOG_SECONDS
    while True:
        try:
            desc: dict[str, Any] = client.describe_export(ExportArn=arn)["ExportDescription"]
        except (ClientError, BotoCoreError) as e:
            raise _aws_error(e, f"export {arn}") from e
        status = desc.get("ExportStatus", "?")
        elapsed = time.monotonic() - start
        if status != "IN_PROGRESS":
            end = "\n" if tty else ""
            print(f"{end}export {status.lower()} after {_duration(elapsed)}", file=sys.stderr)
            if status != "COMPLETED":
                reason = desc.get("FailureMessage") or desc.get("FailureCode") or "no reason given"
                raise InputError(f"export {arn} {status}: {reason}")
            return desc
        if tty:
            print(
                f"\rexport in progress: {_duration(elapsed)}", end="", file=sys.stderr, flush=True
            )
        elif elapsed - last_line >= QUIET_LOG_SECONDS:
            print(f"export in progress: {_duration(elapsed)}", file=sys.stderr, flush=True)
            last_line = elapsed
        time.sleep(poll_seconds)


def export_root(desc: dict[str, Any]) -> str:
    """s3://bucket/prefix/AWSDynamoDB/<export-id>/: the folder AWS writes the manifests in
    (AWS-FORMATS.md §1.2). ExportManifest names the manifest when DescribeExport gives it;
    otherwise the export id is the last part of the ExportArn."""
    bucket = desc["S3Bucket"]
    manifest = desc.get("ExportManifest")
    if isinstance(manifest, str) and "AWSDynamoDB/" in manifest:
        return f"s3://{bucket}/{manifest.rsplit('/', 1)[0]}/"
    prefix = (desc.get("S3Prefix") or "").strip("/")
    export_id = desc["ExportArn"].rsplit("/", 1)[-1]
    base = f"{prefix}/" if prefix else ""
    return f"s3://{bucket}/{base}AWSDynamoDB/{export_id}/"


def _check_manifest(root: str) -> None:
    """Warns when the finished export's manifest is not where the config will look for it."""
    from botocore.exceptions import BotoCoreError, ClientError

    from ddbshard.storage import s3_client

    bucket, prefix = split_s3_uri(root)
    try:
        s3_client().head_object(Bucket=bucket, Key=f"{prefix}manifest-summary.json")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        what = (
            "is not there"
            if code in ("404", "NoSuchKey", "NotFound")
            else f"cannot be read ({code})"
        )
        print(
            f"warning: {root}manifest-summary.json {what}; check `source` before splitting",
            file=sys.stderr,
        )
    except BotoCoreError as e:
        print(f"warning: could not check {root}: {e}", file=sys.stderr)


# --- small helpers ---------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """ISO 8601 (a time without a zone is UTC) or seconds since the epoch."""
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), tz=UTC)
        t = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise ConfigError(
            f"--export-time {text!r}: not ISO 8601 (2026-11-23T10:00:00Z) or epoch seconds"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _arn_region(arn: str | None) -> str | None:
    """arn:aws:dynamodb:REGION:ACCOUNT:table/NAME → REGION."""
    parts = (arn or "").split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None


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
