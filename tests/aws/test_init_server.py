"""init against moto's DynamoDB and S3 over HTTP: table → init → config → split → ImportTable →
a new table whose description matches the old one's (the LSI as a GSI), with stream, TTL, tags
and PITR applied afterwards.

What moto does differently from AWS, and how these tests live with it:
- ExportTableToPointInTime completes at once, writes one gzip data file and no manifests, and
  puts it under AWSDynamoDB/<an id that is not the one in the ExportArn>/. So `--export` is
  tested for what it asks and reports (the request, the PITR refusal, the root it derives from
  the ARN, the warning that no manifest is there); the export that is split is built from a
  Scan of the table in AWS's layout, with manifests, and uploaded to moto's S3.
- ImportTable works for DYNAMODB_JSON with GZIP or no compression only: the split uses gzip.
  Its JSON parser also fails on escaped quotes and drops some other lines, so the table holds
  the synth items it reads back whole (unicode, every type and deep nesting stay).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddbshard import synth
from ddbshard.aws.importspec import import_table_request, post_import_settings
from ddbshard.config import load_config
from support.s3_server import clear_fsspec_cache, reset, s3_client

pytestmark = pytest.mark.server

TABLE = "Feed"


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


@pytest.fixture
def ddb(endpoint: str) -> Any:
    reset(endpoint)
    clear_fsspec_cache()
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def _create_source_table(ddb: Any, *, pitr: bool = True) -> dict[str, Any]:
    """Two GSIs (one INCLUDE), an LSI, a stream, TTL, tags; keys fit synth's items."""
    ddb.create_table(
        TableName=TABLE,
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": t}
            for a, t in [
                ("pk", "S"),
                ("sk", "S"),
                ("user_id", "S"),
                ("created_at", "S"),
                ("kind", "S"),
                ("score", "N"),
            ]
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 12, "WriteCapacityUnits": 4},
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byUser",
                "KeySchema": [
                    {"AttributeName": "user_id", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["title", "kind"]},
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 2},
            },
            {
                "IndexName": "byKind",
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "score", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 1},
            },
        ],
        LocalSecondaryIndexes=[
            {
                "IndexName": "byCreated",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "created_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        Tags=[{"Key": "team", "Value": "feed"}, {"Key": "env", "Value": "test"}],
    )
    ddb.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
    if pitr:
        ddb.update_continuous_backups(
            TableName=TABLE,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    table: dict[str, Any] = ddb.describe_table(TableName=TABLE)["Table"]
    return table


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", *args], capture_output=True, text=True, cwd=cwd
    )


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def _indexes(table: dict[str, Any]) -> dict[str, Any]:
    """Every index of a DescribeTable result by name: (keys, projection) — LSIs and GSIs alike,
    since the LSI must come back as a GSI with the same keys and projection."""
    out = {}
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for ix in table.get(kind, []):
            proj = dict(ix["Projection"])
            proj["NonKeyAttributes"] = sorted(proj.get("NonKeyAttributes", []))
            out[ix["IndexName"]] = (_keys(ix["KeySchema"]), proj)
    return out


def _convert_binaries(value: Any, convert: Any) -> Any:
    """Applies `convert` to every B and BS member of an attribute value, however deep."""
    (kind, inner), = value.items()  # fmt: skip
    if kind == "B":
        return {"B": convert(inner)}
    if kind == "BS":
        return {"BS": [convert(x) for x in inner]}
    if kind == "M":
        return {"M": {k: _convert_binaries(v, convert) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_convert_binaries(v, convert) for v in inner]}
    return value


def _moto_safe(item: dict[str, Any]) -> bool:
    """Whether moto's ImportTable can read the item's line. It parses with py_partiql_parser,
    which fails on escaped quotes ("'Variable' object has no attribute 'encode'") and silently
    drops some lines holding braces or empty maps; AWS reads them all. The table gets only items
    moto's parser reads back whole, so the import can be checked item for item."""
    from py_partiql_parser import JsonParser

    line = json.dumps({"Item": item}, ensure_ascii=False)
    if "\\" in line:
        return False
    try:
        parsed = list(JsonParser.parse(original=line + "\n"))
    except Exception:
        return False
    return len(parsed) == 1 and json.dumps(parsed[0], sort_keys=True, default=dict) == json.dumps(
        {"Item": item}, sort_keys=True
    )


def _fill_table(ddb: Any, count: int) -> int:
    """Realistic items (every DynamoDB type, unicode, deep maps) from synth, into the table."""
    items = [i for i in synth.make_items(count, seed=21) if _moto_safe(i)]
    for start in range(0, len(items), 25):
        batch = [
            {
                "PutRequest": {
                    "Item": {k: _convert_binaries(v, base64.b64decode) for k, v in i.items()}
                }
            }
            for i in items[start : start + 25]
        ]
        ddb.batch_write_item(RequestItems={TABLE: batch})
    return len(items)


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    """Every item, in wire form (B and BS as base64 text, as in an export line)."""
    items, kw = [], {"TableName": table}
    while True:
        page = ddb.scan(**kw)
        for item in page["Items"]:
            items.append(
                {
                    k: _convert_binaries(v, lambda b: base64.b64encode(b).decode())
                    for k, v in item.items()
                }
            )
        if "LastEvaluatedKey" not in page:
            return items
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _export_from_scan(ddb: Any, s3: Any, bucket: str, files: int = 3) -> str:
    """What ExportTableToPointInTime writes on AWS, made from a Scan (moto's export writes no
    manifests): data/*.json.gz of {"Item":...} lines, manifest-files.json with each file's item
    count and base64 MD5, manifest-summary.json, their .md5 files and _started
    (AWS-FORMATS.md §1.2-1.4). Returns the export root."""
    lines = [json.dumps({"Item": i}, ensure_ascii=False) + "\n" for i in _scan(ddb, TABLE)]
    export_id = "01763892000000-1a2b3c4d"
    root = f"2026/AWSDynamoDB/{export_id}"
    entries = []
    for n in range(files):
        part = "".join(lines[n::files]).encode()
        body = gzip.compress(part)
        key = f"{root}/data/part{n:04d}abcdefghijklmnop.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        entries.append(
            {
                "itemCount": len(lines[n::files]),
                "md5Checksum": base64.b64encode(hashlib.md5(body).digest()).decode(),
                "etag": hashlib.md5(body).hexdigest(),
                "dataFileS3Key": key,
            }
        )
    files_json = "".join(json.dumps(e) + "\n" for e in entries).encode()
    summary = {
        "version": "2020-06-30",
        "exportArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/export/{export_id}",
        "tableArn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}",
        "s3Bucket": bucket,
        "s3Prefix": "2026",
        "manifestFilesS3Key": f"{root}/manifest-files.json",
        "billedSizeBytes": sum(len(x.encode()) for x in lines),
        "itemCount": len(lines),
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    }
    summary_json = json.dumps(summary).encode()
    for name, body in (("manifest-files", files_json), ("manifest-summary", summary_json)):
        s3.put_object(Bucket=bucket, Key=f"{root}/{name}.json", Body=body)
        s3.put_object(
            Bucket=bucket,
            Key=f"{root}/{name}.md5",
            Body=base64.b64encode(hashlib.md5(body).digest()),
        )
    s3.put_object(Bucket=bucket, Key=f"{root}/_started", Body=b"")
    return f"s3://{bucket}/{root}/"


def test_init_split_import_recreates_the_table(ddb: Any, endpoint: str, tmp_path: Path) -> None:
    original = _create_source_table(ddb)
    count = _fill_table(ddb, 3000)
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="exports")
    s3.create_bucket(Bucket="imports")
    source = _export_from_scan(ddb, s3, "exports")

    r = _cli(
        "init", "--from-table", TABLE, "--out", "split.toml", "--source", source,
        "--dest", "s3://imports/run1/", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2 GSIs, 1 LSI as GSI" in r.stdout and "PITR on" in r.stdout

    # The config loads, and its ImportTable request is the original table's, checked here
    # against DescribeTable directly (init checks it too, by its own derivation).
    config = load_config(tmp_path / "split.toml")
    (target,) = config.targets
    params = import_table_request(target, compression="gzip", bucket="imports", prefix="run1/")[
        "TableCreationParameters"
    ]
    assert params["TableName"] == f"{TABLE}-new"
    assert _keys(params["KeySchema"]) == _keys(original["KeySchema"])
    assert sorted(map(json.dumps, params["AttributeDefinitions"])) == sorted(
        map(json.dumps, original["AttributeDefinitions"])
    )
    assert _indexes(params) == _indexes(original)

    # Split: gzip shards (moto's ImportTable reads GZIP or NONE only), written to moto's S3.
    text = (tmp_path / "split.toml").read_text()
    text = text.replace('compression = "zstd"', 'compression = "gzip"')
    text = text.replace('shards = "auto"', "shards = 3")
    (tmp_path / "split.toml").write_text(text)
    r = _cli("split", "split.toml", "--quiet", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    summary = json.loads(s3.get_object(Bucket="imports", Key="run1/_summary.json")["Body"].read())
    assert summary["items"]["read"] == count and summary["items"]["written"] == count

    # Import with the request split wrote, as `aws dynamodb import-table --cli-input-json`.
    request = json.loads(
        s3.get_object(Bucket="imports", Key=f"run1/{TABLE}/import-table.json")["Body"].read()
    )
    assert request["InputCompressionType"] == "GZIP"
    arn = ddb.import_table(**request)["ImportTableDescription"]["ImportArn"]
    for _ in range(100):
        status = ddb.describe_import(ImportArn=arn)["ImportTableDescription"]
        if status["ImportStatus"] != "IN_PROGRESS":
            break
        time.sleep(0.1)
    assert status["ImportStatus"] == "COMPLETED", status
    assert status["ImportedItemCount"] == count

    new = ddb.describe_table(TableName=f"{TABLE}-new")["Table"]
    assert _keys(new["KeySchema"]) == _keys(original["KeySchema"])
    assert sorted(map(json.dumps, new["AttributeDefinitions"])) == sorted(
        map(json.dumps, original["AttributeDefinitions"])
    )
    assert not new.get("LocalSecondaryIndexes")  # moto shows an empty list
    assert _indexes(new) == _indexes(original)  # byCreated is now a GSI, same keys, projection
    assert new["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
    capacity = {
        g["IndexName"]: (
            g["ProvisionedThroughput"]["ReadCapacityUnits"],
            g["ProvisionedThroughput"]["WriteCapacityUnits"],
        )
        for g in new["GlobalSecondaryIndexes"]
    }
    assert capacity == {"byUser": (5, 2), "byKind": (3, 1), "byCreated": (12, 4)}
    # Every item arrived as it was in the old table.
    canon = sorted(json.dumps(i, sort_keys=True) for i in _scan(ddb, f"{TABLE}-new"))
    assert len(canon) == count
    assert canon == sorted(json.dumps(i, sort_keys=True) for i in _scan(ddb, TABLE))

    # What ImportTable cannot set, applied from the config (as `import` will): then the new
    # table's stream, TTL, tags and PITR are the old one's.
    post = post_import_settings(target)
    ddb.update_table(TableName=f"{TABLE}-new", StreamSpecification=post["StreamSpecification"])
    ddb.update_time_to_live(
        TableName=f"{TABLE}-new", TimeToLiveSpecification=post["TimeToLiveSpecification"]
    )
    ddb.tag_resource(ResourceArn=new["TableArn"], Tags=post["Tags"])
    ddb.update_continuous_backups(
        TableName=f"{TABLE}-new",
        PointInTimeRecoverySpecification=post["PointInTimeRecoverySpecification"],
    )
    new = ddb.describe_table(TableName=f"{TABLE}-new")["Table"]
    assert new["StreamSpecification"] == original["StreamSpecification"]
    ttl = ddb.describe_time_to_live(TableName=f"{TABLE}-new")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    tags = ddb.list_tags_of_resource(ResourceArn=new["TableArn"])["Tags"]
    assert sorted(map(json.dumps, tags)) == sorted(
        map(json.dumps, ddb.list_tags_of_resource(ResourceArn=original["TableArn"])["Tags"])
    )
    backups = ddb.describe_continuous_backups(TableName=f"{TABLE}-new")
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"


def _cli_json(response: dict[str, Any]) -> dict[str, Any]:
    """A boto3 response as the AWS CLI prints it: no ResponseMetadata, times as ISO text."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    loaded: dict[str, Any] = json.loads(json.dumps(body, default=lambda v: v.isoformat()))
    return loaded


def test_from_json_gives_the_same_config_as_the_live_table(ddb: Any, tmp_path: Path) -> None:
    original = _create_source_table(ddb)
    r = _cli("init", "--from-table", TABLE, "--out", "live.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    outputs = {
        "describe-table.json": ddb.describe_table(TableName=TABLE),
        "ttl.json": ddb.describe_time_to_live(TableName=TABLE),
        "tags.json": ddb.list_tags_of_resource(ResourceArn=original["TableArn"]),
        "backups.json": ddb.describe_continuous_backups(TableName=TABLE),
    }
    for name, response in outputs.items():
        (tmp_path / name).write_text(json.dumps(_cli_json(response), indent=2))
    r = _cli("init", "--from-json", *reversed(list(outputs)), "--out", "files.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    live = (tmp_path / "live.toml").read_text()
    assert (tmp_path / "files.toml").read_text() == live
    assert 'ttl = "expires_at"' in live and "pitr = true" in live


def test_export_follows_to_the_end_and_fills_source(
    ddb: Any, endpoint: str, tmp_path: Path
) -> None:
    _create_source_table(ddb)
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="snapshots")
    r = _cli(
        "init", "--from-table", TABLE, "--out", "split.toml", "--export", "s3://snapshots/feed",
        "--export-time", "2026-11-23T10:00:00Z", "--poll-seconds", "0.1", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    arn = re.search(r"export started: (\S+)", r.stderr)
    assert arn is not None and "export completed" in r.stderr
    export_id = arn.group(1).rsplit("/", 1)[-1]
    config = load_config(tmp_path / "split.toml")
    assert config.source == f"s3://snapshots/feed/AWSDynamoDB/{export_id}/"
    assert "Full export of" in (tmp_path / "split.toml").read_text()
    # moto wrote a data file but no manifest (and in another folder): init says so.
    assert "manifest-summary.json is not there" in r.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="snapshots")["Contents"]]
    assert keys and all(k.startswith("feed/AWSDynamoDB/") for k in keys)


def test_export_refused_when_pitr_is_off(ddb: Any, endpoint: str, tmp_path: Path) -> None:
    _create_source_table(ddb, pitr=False)
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="snapshots")
    r = _cli(
        "init", "--from-table", TABLE, "--out", "split.toml", "--export", "s3://snapshots/x",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    assert "point-in-time recovery is off" in r.stderr
    assert "update-continuous-backups" in r.stderr
    assert r.stderr.count("\n") == 1  # one line, no traceback
    assert not (tmp_path / "split.toml").exists()
    assert "Contents" not in s3.list_objects_v2(Bucket="snapshots")  # no export was started


def test_missing_table_is_one_line(ddb: Any, tmp_path: Path) -> None:
    r = _cli("init", "--from-table", "Nope", "--out", "split.toml", cwd=tmp_path)
    assert r.returncode == 2
    assert "table Nope: ResourceNotFoundException" in r.stderr
    assert r.stderr.count("\n") == 1
