"""What ImportTable cannot set, applied once the imported table exists: stream, TTL, tags, PITR.

ImportTable's TableCreationParameters has no member for any of these (AWS-FORMATS.md §3.1), so
`import --wait` applies them after the import COMPLETED, with UpdateTable
(StreamSpecification), UpdateTimeToLive, TagResource and UpdateContinuousBackups, in that
order. `steps` describes the same work as `aws` CLI commands, which `import --dry-run` and
`import` without `--wait` print for the user to run.

`settings` is `importspec.post_import_settings(target)`: each key is the member of the call
that applies it.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Step", "apply_settings", "aws_error", "steps", "wait_active"]

# A table created by an import is ACTIVE when the import completes, and UpdateTable for a stream
# takes seconds; ten minutes only guards against waiting forever on a stuck table.
ACTIVE_TIMEOUT = 600.0
# UpdateContinuousBackups answers ContinuousBackupsUnavailableException while backups are still
# being enabled for a new table (DynamoDB API); retrying for a few minutes rides that out.
PITR_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Step:
    """One post-import setting: which (stream | ttl | tags | pitr), what it does in words, and
    the equivalent aws CLI command."""

    kind: str
    what: str
    command: str


def _json_arg(value: Any) -> str:
    # JSON rather than the CLI's shorthand syntax: tag values may hold commas, '=' or spaces,
    # which shorthand would split on.
    return shlex.quote(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def steps(table_name: str, settings: dict[str, Any]) -> list[Step]:
    """The post-import settings of one table, in the order `apply_settings` applies them."""
    name = shlex.quote(table_name)
    out: list[Step] = []
    stream = settings.get("StreamSpecification")
    if stream is not None:
        out.append(
            Step(
                "stream",
                f"stream {stream['StreamViewType']}",
                f"aws dynamodb update-table --table-name {name} "
                f"--stream-specification {_json_arg(stream)}",
            )
        )
    ttl = settings.get("TimeToLiveSpecification")
    if ttl is not None:
        out.append(
            Step(
                "ttl",
                f"TTL on '{ttl['AttributeName']}'",
                f"aws dynamodb update-time-to-live --table-name {name} "
                f"--time-to-live-specification {_json_arg(ttl)}",
            )
        )
    tags = settings.get("Tags")
    if tags:
        # TagResource takes the table's ARN, which holds the account id: let the CLI look it up.
        arn = (
            f'"$(aws dynamodb describe-table --table-name {name} '
            f'--query Table.TableArn --output text)"'
        )
        out.append(
            Step(
                "tags",
                f"{len(tags)} tag(s)",
                f"aws dynamodb tag-resource --resource-arn {arn} --tags {_json_arg(tags)}",
            )
        )
    pitr = settings.get("PointInTimeRecoverySpecification")
    if pitr is not None:
        state = "on" if pitr["PointInTimeRecoveryEnabled"] else "off"
        out.append(
            Step(
                "pitr",
                f"point-in-time recovery {state}",
                f"aws dynamodb update-continuous-backups --table-name {name} "
                f"--point-in-time-recovery-specification {_json_arg(pitr)}",
            )
        )
    return out


def aws_error(e: Exception) -> str:
    """A botocore error in a few words: the error code and AWS's message."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    return f"{type(e).__name__}: {e}"


def _code(e: Exception) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def wait_active(
    ddb: Any, table_name: str, *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Polls DescribeTable until the table is ACTIVE; returns its description.

    Raises TimeoutError after ACTIVE_TIMEOUT seconds; botocore errors pass through.
    """
    deadline = time.monotonic() + ACTIVE_TIMEOUT
    delay = 1.0
    while True:
        table: dict[str, Any] = ddb.describe_table(TableName=table_name)["Table"]
        if table.get("TableStatus") == "ACTIVE":
            return table
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"table {table_name} is still {table.get('TableStatus')} after "
                f"{ACTIVE_TIMEOUT:.0f} s"
            )
        sleep(delay)
        delay = min(delay * 2, 15.0)


def apply_settings(
    ddb: Any,
    table_name: str,
    settings: dict[str, Any],
    *,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Applies `settings` to the (imported, existing) table; returns the problems, one line each.

    Every step is tried even when an earlier one failed, since they are independent; a failed
    step's message carries the aws CLI command that does it by hand.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    todo = steps(table_name, settings)
    problems: list[str] = []

    def failed(step: Step, reason: str) -> None:
        problems.append(f"{step.what} not applied ({reason}); to do it: {step.command}")

    try:
        table = wait_active(ddb, table_name, sleep=sleep)
    except (ClientError, BotoCoreError) as e:
        for step in todo:
            failed(step, aws_error(e))
        return problems
    except TimeoutError as e:
        for step in todo:
            failed(step, str(e))
        return problems

    for step in todo:
        try:
            if step.kind == "stream":
                table = _stream(ddb, table, settings["StreamSpecification"], log, sleep)
            elif step.kind == "ttl":
                ddb.update_time_to_live(
                    TableName=table_name,
                    TimeToLiveSpecification=settings["TimeToLiveSpecification"],
                )
            elif step.kind == "tags":
                ddb.tag_resource(ResourceArn=table["TableArn"], Tags=settings["Tags"])
            else:
                _pitr(ddb, table_name, settings["PointInTimeRecoverySpecification"], sleep)
        except (ClientError, BotoCoreError) as e:
            failed(step, aws_error(e))
        except (TimeoutError, ValueError) as e:
            failed(step, str(e))
        else:
            log(f"{table_name}: {step.what}: applied")
    return problems


def _stream(
    ddb: Any,
    table: dict[str, Any],
    spec: dict[str, Any],
    log: Callable[[str], None],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    current = table.get("StreamSpecification") or {}
    if current.get("StreamEnabled"):
        if current.get("StreamViewType") == spec["StreamViewType"]:
            return table  # already as asked: UpdateTable would refuse "already has a stream"
        # The view type of a stream cannot be changed, only disabled and replaced (which makes
        # a new stream ARN); that is the user's call, not ours.
        raise ValueError(
            f"the table already has a {current.get('StreamViewType')} stream; "
            "its view type cannot be changed in place"
        )
    ddb.update_table(TableName=table["TableName"], StreamSpecification=spec)
    # The table is UPDATING until the stream exists; the next calls want it ACTIVE.
    updated = wait_active(ddb, table["TableName"], sleep=sleep)
    arn = updated.get("LatestStreamArn")
    if arn:
        log(f"{table['TableName']}: stream ARN {arn}")
    return updated


def _pitr(ddb: Any, table_name: str, spec: dict[str, Any], sleep: Callable[[float], None]) -> None:
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + PITR_RETRY_SECONDS
    delay = 2.0
    while True:
        try:
            ddb.update_continuous_backups(
                TableName=table_name, PointInTimeRecoverySpecification=spec
            )
            return
        except ClientError as e:
            if _code(e) != "ContinuousBackupsUnavailableException":
                raise
            if time.monotonic() > deadline:
                raise
        sleep(delay)
        delay = min(delay * 2, 30.0)
