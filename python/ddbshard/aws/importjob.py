"""ImportTable jobs for the targets: check, start, follow, then finish each table (`import`).

For each target, `T/import-table.json` (written by `split`) is the request and `T/manifest.json`
says how many shards and items to expect. Everything that can be checked is checked for every
target before the first import starts, so a refusal never leaves some targets imported and
others not: the request names a real bucket, the shards fit ImportTable's object limit, no LSI,
the table does not exist yet (ImportTable only creates tables), and the objects under the
request's S3 prefix are exactly the manifest's shards (ImportTable reads every object there).
With --wait, DescribeImport is followed to the end, ImportedItemCount is held against the
manifest, and what ImportTable cannot set is applied (postimport.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ddbshard.aws.importspec import post_import_settings
from ddbshard.aws.postimport import apply_settings, aws_error, steps
from ddbshard.compression import COMPRESSIONS
from ddbshard.config import SplitConfig, TargetConfig
from ddbshard.exceptions import ConfigError, DdbShardError, InputError
from ddbshard.io.storage import botocore_config_kwargs, describe_os_error, url_to_fs
from ddbshard.limits import MAX_CONCURRENT_IMPORTS, MAX_IMPORT_OBJECTS

__all__ = [
    "ImportRefused",
    "Plan",
    "aws_failure",
    "check_objects",
    "check_table_absent",
    "client_token",
    "dynamodb_client",
    "finish",
    "follow",
    "load_plans",
    "print_dry_run",
    "print_started",
    "start_imports",
]

# The objects per import (MAX_IMPORT_OBJECTS) are checked here, with the rest, so that no target
# starts when one cannot; and no more than MAX_CONCURRENT_IMPORTS start at once, which would
# fail part-way, after some tables were already being created.
# Where ImportTable logs the items it could not import when DescribeImport names no log group:
# log group /aws-dynamodb/imports, stream <import-id>/error (AWS-FORMATS.md §3.5).
ERROR_LOG_GROUP = "/aws-dynamodb/imports"
# The bucket `split` writes into import-table.json when it was not told where the shards go
# (manifests.PLACEHOLDER_S3); a test keeps the two in step.
PLACEHOLDER_BUCKET = "REPLACE-WITH-BUCKET"
_DONE = ("COMPLETED", "FAILED", "CANCELLED")
# DescribeImport polling: quick at first (small imports end in seconds), then every 20 s, since
# real imports take minutes to hours and their counters stay 0 until the end
# (AWS-FORMATS.md §8), so polling faster shows nothing new.
POLL_FIRST = 1.0
POLL_MAX = 20.0
HEARTBEAT = 60.0  # seconds between progress lines when nothing changes
# An import whose StartTime is this much older than our ImportTable call was started by an
# earlier call with the same ClientToken; the margin absorbs clock skew.
EARLIER_MARGIN = timedelta(minutes=2)


class ImportRefused(DdbShardError):
    """A target that cannot be imported as it is; no import was started."""


@dataclass(frozen=True)
class Plan:
    """One target's import, as read from dest and checked offline."""

    target: str
    table_name: str
    request: dict[str, Any]  # the ImportTable request, ClientToken included
    request_url: str  # where import-table.json is
    manifest_url: str
    items: int  # the manifest's item count: what ImportedItemCount should be
    shards: dict[str, int]  # object name under the S3 prefix -> bytes
    settings: dict[str, Any]  # post_import_settings of the target

    @property
    def bucket(self) -> str:
        return str(self.request["S3BucketSource"]["S3Bucket"])

    @property
    def prefix(self) -> str:
        return str(self.request["S3BucketSource"].get("S3KeyPrefix", ""))

    @property
    def s3_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class Started:
    plan: Plan
    arn: str
    description: dict[str, Any]  # the latest ImportTableDescription
    earlier: bool  # ImportTable returned an import an earlier run started (same ClientToken)

    @property
    def status(self) -> str:
        return str(self.description.get("ImportStatus", "IN_PROGRESS"))


# --- reading and checking what split wrote --------------------------------------------------


def client_token(request: dict[str, Any], shard_md5s: Sequence[str], salt: str = "") -> str:
    """An ImportTable ClientToken that is the same for the same request over the same shards.

    A start retried after a lost response, or a rerun, then gets the import already running
    instead of a second one (tokens are idempotent for 8 hours). The shards' MD5s are part of
    it because AWS returns the original import for a reused token even when only the data
    changed (AWS-FORMATS.md §9.7). 32 hex characters fit within any token length AWS takes
    (botocore's own tokens are 36-character UUIDs).
    """
    body = {k: v for k, v in request.items() if k != "ClientToken"}
    h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for md5 in shard_md5s:
        h.update(b"\n" + md5.encode())
    h.update(b"\n" + salt.encode())
    return h.hexdigest()[:32]


def _read_json(url: str) -> dict[str, Any]:
    fs, path = url_to_fs(url)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise InputError(
            f"{url}: not found; run split first (import reads what it wrote)"
        ) from None
    except OSError as e:
        raise InputError(f"{url}: {describe_os_error(e)}") from e
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise InputError(f"{url}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{url}: expected a JSON object")
    return obj


def _select(config: SplitConfig, names: Sequence[str] | None) -> list[TargetConfig]:
    if not names:
        return list(config.targets)
    known = {t.name: t for t in config.targets}
    for n in names:
        if n not in known:
            raise ConfigError(
                f"{config.origin}: --target {n}: no such target (targets: {', '.join(known)})"
            )
    return [t for t in config.targets if t.name in names]


def load_plans(
    config: SplitConfig, names: Sequence[str] | None = None, *, salt: str = ""
) -> list[Plan]:
    """Reads and checks each selected target's import-table.json and manifest.json.

    Only the offline checks: nothing here calls DynamoDB, and S3 only to read those files.
    """
    plans = [_plan(config, t, salt) for t in _select(config, names)]
    if len(plans) > MAX_CONCURRENT_IMPORTS:
        raise ImportRefused(
            f"{len(plans)} targets; an account runs at most {MAX_CONCURRENT_IMPORTS} imports "
            "at once: import them in groups with --target"
        )
    return plans


def _plan(config: SplitConfig, target: TargetConfig, salt: str) -> Plan:
    base = f"{config.dest.rstrip('/')}/{target.name}"
    request_url, manifest_url = f"{base}/import-table.json", f"{base}/manifest.json"
    request = _read_json(request_url)
    source = request.get("S3BucketSource")
    params = request.get("TableCreationParameters")
    if not isinstance(source, dict) or not isinstance(source.get("S3Bucket"), str):
        raise InputError(f"{request_url}: no S3BucketSource.S3Bucket; run split again")
    if not isinstance(params, dict):
        raise InputError(f"{request_url}: no TableCreationParameters; run split again")
    if source["S3Bucket"] == PLACEHOLDER_BUCKET:
        raise ImportRefused(
            f"{request_url}: the shards' S3 location is a placeholder ({PLACEHOLDER_BUCKET}); "
            f"upload {base}/data/ to S3, then run split again with --s3-dest "
            "s3://bucket/prefix/ (or s3_dest in the config), or edit S3BucketSource in the file"
        )
    if "LocalSecondaryIndexes" in params:
        raise ImportRefused(
            f"{request_url}: LocalSecondaryIndexes: ImportTable cannot create local secondary "
            "indexes; declare it under global_secondary_indexes instead"
        )
    if params.get("TableName") != target.table.table_name:
        # The post-import settings come from the config: applying them to another table than
        # the one the request creates would be wrong, so the two must agree.
        raise ImportRefused(
            f"{request_url} creates table {params.get('TableName')!r}, but the config names "
            f"{target.table.table_name!r} for target {target.name}: run split again"
        )

    manifest = _read_json(manifest_url)
    entries = manifest.get("shards")
    if not isinstance(entries, list) or not isinstance(manifest.get("items"), int):
        raise InputError(f"{manifest_url}: no shards list or item count; run split again")
    if len(entries) > MAX_IMPORT_OBJECTS:
        raise ImportRefused(
            f"{manifest_url}: {len(entries):,} shards; ImportTable reads at most "
            f"{MAX_IMPORT_OBJECTS:,} S3 objects per import (AWS quota): split with fewer shards"
        )
    known = COMPRESSIONS.get(str(manifest.get("compression")))
    compression = known.import_name if known is not None else None
    if compression is not None and compression != request.get("InputCompressionType", "NONE"):
        raise ImportRefused(
            f"{request_url}: InputCompressionType {request.get('InputCompressionType')}, but "
            f"the shards are {manifest.get('compression')} ({manifest_url})"
        )
    shards: dict[str, int] = {}
    md5s: list[str] = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            raise InputError(f"{manifest_url}: a shard entry without a key; run split again")
        # Manifest keys are relative to the target's folder ("data/part-00000.json.gz"); the
        # request's prefix ends in "<target>/data/", so the object name under it drops "data/".
        name = e["key"].removeprefix("data/")
        shards[name] = int(e.get("bytes", -1))
        md5s.append(f"{name} {e.get('md5', '')}")

    if "ClientToken" not in request or salt:
        request = {**request, "ClientToken": client_token(request, md5s, salt)}
    return Plan(
        target=target.name,
        table_name=target.table.table_name,
        request=request,
        request_url=request_url,
        manifest_url=manifest_url,
        items=int(manifest["items"]),
        shards=shards,
        settings=post_import_settings(target),
    )


# --- the AWS side -------------------------------------------------------------------------


def dynamodb_client() -> Any:
    """A boto3 DynamoDB client with the same retry policy as ddbshard's S3 clients (standard
    mode: throttling, 5xx and dropped connections are retried with backoff)."""
    import boto3
    from botocore.config import Config

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.session.Session().client(
        "dynamodb", region_name=region, config=Config(**botocore_config_kwargs())
    )


def aws_failure(what: str, e: Exception) -> DdbShardError:
    return DdbShardError(f"{what}: {aws_error(e)}")


def check_table_absent(ddb: Any, plan: Plan) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        table = ddb.describe_table(TableName=plan.table_name)["Table"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return
        raise aws_failure(f"DescribeTable {plan.table_name}", e) from e
    except BotoCoreError as e:
        raise aws_failure(f"DescribeTable {plan.table_name}", e) from e
    raise ImportRefused(
        f"table {plan.table_name} (target {plan.target}) already exists "
        f"({table.get('TableStatus')}); ImportTable only creates new tables: delete it, or "
        "import under another name (table_name in [target.table], then split again); if an "
        "import into it is running, `aws dynamodb list-imports --table-arn "
        f"{table.get('TableArn')}` shows it"
    )


def check_objects(s3: Any, plan: Plan, local_data: str | None) -> None:
    """The objects under the request's prefix must be exactly the manifest's shards, at the
    manifest's sizes: ImportTable reads every object there, and a prefix with no objects still
    COMPLETES, creating an empty table (AWS-FORMATS.md §9.9)."""
    from botocore.exceptions import BotoCoreError, ClientError

    found: dict[str, int] = {}
    kwargs: dict[str, str] = {"Bucket": plan.bucket, "Prefix": plan.prefix}
    owner = plan.request["S3BucketSource"].get("S3BucketOwner")
    if owner:
        kwargs["ExpectedBucketOwner"] = owner
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                key, size = obj["Key"], int(obj["Size"])
                if key.endswith("/") and size == 0:
                    continue  # a "folder" made by the S3 console: zero items to ImportTable
                found[key[len(plan.prefix) :]] = size
    except (ClientError, BotoCoreError) as e:
        raise InputError(f"{plan.s3_url}: {aws_error(e)}") from e

    missing = [n for n in plan.shards if n not in found]
    if missing:
        upload = (
            f"; upload them: aws s3 cp --recursive {shlex.quote(local_data)} "
            f"{shlex.quote(plan.s3_url)}"
            if local_data
            else ""
        )
        raise ImportRefused(
            f"{plan.s3_url}: {len(missing):,} of the {len(plan.shards):,} shards in "
            f"{plan.manifest_url} are not there (first: {missing[0]}){upload}"
        )
    extra = sorted(n for n in found if n not in plan.shards)
    if extra:
        raise ImportRefused(
            f"{plan.s3_url}: {len(extra):,} object(s) that are not shards of "
            f"{plan.manifest_url} (first: {extra[0]}); ImportTable reads every object under "
            "the prefix: remove them"
        )
    for name, size in plan.shards.items():
        if found[name] != size:
            raise ImportRefused(
                f"{plan.s3_url}{name}: {found[name]:,} bytes, but {plan.manifest_url} says "
                f"{size:,}: upload it again"
            )


def start_imports(ddb: Any, plans: Sequence[Plan], *, log: Callable[[str], None]) -> list[Started]:
    from botocore.exceptions import BotoCoreError, ClientError

    started: list[Started] = []
    for plan in plans:
        called = datetime.now(UTC)
        try:
            d = ddb.import_table(**plan.request)["ImportTableDescription"]
        except (ClientError, BotoCoreError) as e:
            if started:
                print_started(started)
            also = f" ({len(started)} import(s) already started, listed above)" if started else ""
            raise aws_failure(f"ImportTable for target {plan.target}{also}", e) from e
        begun = d.get("StartTime")
        earlier = isinstance(begun, datetime) and begun < called - EARLIER_MARGIN
        s = Started(plan, str(d["ImportArn"]), d, earlier)
        started.append(s)
        log(f"{plan.target}: import {'found (started earlier)' if earlier else 'started'}: {s.arn}")
    return started


def _progress_line(s: Started, elapsed: float) -> str:
    d = s.description
    return (
        f"{s.plan.target}: {s.status}  processed {d.get('ProcessedItemCount') or 0:,} items, "
        f"{_size(d.get('ProcessedSizeBytes') or 0)}, {d.get('ErrorCount') or 0:,} errors  "
        f"({timedelta(seconds=round(elapsed))})"
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:,.1f} {unit}"


def follow(
    ddb: Any,
    started: Sequence[Started],
    *,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Polls DescribeImport until every import has ended, logging a line per change (and for
    every running import each HEARTBEAT seconds, since real counters stay at 0 until the end)."""
    from botocore.exceptions import BotoCoreError, ClientError

    t0 = last_beat = time.monotonic()
    shown: dict[str, tuple[Any, ...]] = {}
    delay = POLL_FIRST
    while True:
        for s in started:
            if s.status in _DONE:
                continue
            try:
                s.description = ddb.describe_import(ImportArn=s.arn)["ImportTableDescription"]
            except (ClientError, BotoCoreError) as e:
                raise aws_failure(
                    f"DescribeImport {s.arn} (the imports go on; follow them with "
                    "aws dynamodb describe-import)",
                    e,
                ) from e
        now = time.monotonic()
        beat = now - last_beat >= HEARTBEAT
        for s in started:
            d = s.description
            state = (s.status, d.get("ProcessedItemCount"), d.get("ErrorCount"))
            if state != shown.get(s.arn) or (beat and s.status not in _DONE):
                log(_progress_line(s, now - t0))
                shown[s.arn] = state
        if beat:
            last_beat = now
        if all(s.status in _DONE for s in started):
            return
        sleep(delay)
        delay = min(delay * 1.5, POLL_MAX)


def _log_location(d: dict[str, Any], arn: str) -> str:
    import_id = arn.rsplit("/", 1)[-1]
    group = str(d.get("CloudWatchLogGroupArn") or "")
    name = group.split(":log-group:", 1)[1].removesuffix(":*") if ":log-group:" in group else ""
    name = name or ERROR_LOG_GROUP
    return (
        f"CloudWatch log group {name}, stream {import_id}/error "
        f"(aws logs filter-log-events --log-group-name {shlex.quote(name)} "
        f"--log-stream-names {shlex.quote(import_id + '/error')})"
    )


def finish(ddb: Any, started: Sequence[Started], *, log: Callable[[str], None]) -> int:
    """Reports each ended import against its manifest and finishes the completed tables;
    returns the exit status (1 when any import failed, lost items or could not be finished)."""
    bad = 0
    for s in started:
        d, plan = s.description, s.plan
        imported = int(d.get("ImportedItemCount") or 0)
        print(
            f"{plan.target}: {s.status}: imported {imported:,} of {plan.items:,} items "
            f"(manifest); processed {d.get('ProcessedItemCount') or 0:,} items, "
            f"{_size(d.get('ProcessedSizeBytes') or 0)}, {d.get('ErrorCount') or 0:,} errors; "
            f"table {plan.table_name}"
        )
        if s.status != "COMPLETED":
            bad += 1
            print(f"  {d.get('FailureCode') or 'failed'}: {d.get('FailureMessage') or ''}".rstrip())
            if s.earlier:
                print(
                    "  this import was started earlier with the same request and shards "
                    "(ImportTable's ClientToken is idempotent for 8 hours); to start a new one, "
                    "delete the table if it exists and run import again with --new-token"
                )
            print(f"  errors: {_log_location(d, s.arn)}")
            print(
                "  the settings ImportTable cannot make were not applied; the table, if it "
                "exists, holds what was imported: delete it before importing again"
            )
            continue
        if imported != plan.items:
            bad += 1
            # Items that fail validation are counted as errors and logged; a shortfall with no
            # errors means the objects changed under the import.
            print(
                f"  {plan.items - imported:,} items of the manifest were not imported; "
                f"errors: {_log_location(d, s.arn)}"
            )
        problems = apply_settings(ddb, plan.table_name, plan.settings, log=log)
        for p in problems:
            print(f"  {p}")
        bad += bool(problems)
    return 1 if bad else 0


# --- output -------------------------------------------------------------------------------


def _import_commands(plan: Plan) -> list[str]:
    token = shlex.quote(plan.request["ClientToken"])
    if plan.request_url.startswith("s3://"):
        # --cli-input-json reads a local file: fetch it first.
        local = f"{plan.target}-import-table.json"
        fetch = f"aws s3 cp {shlex.quote(plan.request_url)} {shlex.quote(local)}"
        return [
            fetch,
            f"aws dynamodb import-table --client-token {token} "
            f"--cli-input-json {shlex.quote('file://' + local)}",
        ]
    return [
        f"aws dynamodb import-table --client-token {token} "
        f"--cli-input-json {shlex.quote('file://' + plan.request_url)}"
    ]


def print_dry_run(plans: Sequence[Plan]) -> None:
    print("# dry run: nothing was called; these are the requests and the equivalent commands")
    for plan in plans:
        print(
            f"\n# target {plan.target} -> table {plan.table_name}: {len(plan.shards):,} shards, "
            f"{plan.items:,} items under {plan.s3_url} "
            f"({plan.request.get('InputCompressionType', 'NONE')})"
        )
        request = json.dumps(plan.request, separators=(",", ":"), ensure_ascii=False)
        print(f"# ImportTable request: {request}")
        for command in _import_commands(plan):
            print(command)
        _print_post_steps(plan)


def _print_post_steps(plan: Plan) -> None:
    todo = steps(plan.table_name, plan.settings)
    if not todo:
        return
    print("# once the import is COMPLETED, what ImportTable cannot set:")
    for step in todo:
        print(step.command)


def print_started(started: Sequence[Started]) -> None:
    for s in started:
        print(f"{s.plan.target}: import {s.arn} (expect {s.plan.items:,} items, manifest)")
        print(
            f"  check: aws dynamodb describe-import --import-arn {shlex.quote(s.arn)} --query "
            "'ImportTableDescription.[ImportStatus,ImportedItemCount,ErrorCount,FailureMessage]'"
        )
        todo = steps(s.plan.table_name, s.plan.settings)
        if todo:
            print("  once it is COMPLETED, apply what ImportTable cannot set:")
            for step in todo:
                print(f"    {step.command}")
