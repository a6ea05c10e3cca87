"""A live table's metadata and its export, through the AWS API: DescribeTable and friends for
`init`, ExportTableToPointInTime followed to its end, and the export root it leaves."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

from ddbshard.aws.tableconfig import (
    TableInfo,
    TableSpec,
)
from ddbshard.exceptions import ConfigError, InputError
from ddbshard.io.storage import (
    NO_REGION,
    aws_setup_problem,
    botocore_config_kwargs,
    split_s3_uri,
)

POLL_SECONDS = 20.0  # DescribeExport: a full export takes minutes to hours; no need to ask more
QUIET_LOG_SECONDS = 60.0  # without a terminal, one progress line a minute keeps logs readable


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

    from ddbshard.io.storage import s3_client

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


def arn_region(arn: str | None) -> str | None:
    """arn:aws:dynamodb:REGION:ACCOUNT:table/NAME → REGION."""
    parts = (arn or "").split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None
