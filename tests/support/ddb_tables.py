"""DynamoDB over HTTP for tests: make tables, load and scan them, build exports, dump streams.

Everything goes through boto3's low-level client (numbers stay text; binaries are bytes there
and base64 in wire JSON), against whatever endpoint the client was made for.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ddbshard.catchup.wire import item_from_client, item_to_client

Wire = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]


def create_table(
    ddb: Any, name: str, hash_key: str, range_key: str | None = None, *, stream: bool = False
) -> None:
    """A table keyed by strings."""
    key = [(hash_key, "S")] + ([(range_key, "S")] if range_key else [])
    create_typed_table(ddb, name, *key, stream=stream)


def create_typed_table(ddb: Any, name: str, *key: tuple[str, str], stream: bool = False) -> None:
    """A table keyed by (attribute, type) pairs: the hash key, then the range key if any."""
    kinds = ("HASH", "RANGE")
    extra: dict[str, Any] = {}
    if stream:
        extra["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": a, "KeyType": k} for (a, _), k in zip(key, kinds, strict=False)
        ],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in key],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )


def load(ddb: Any, table: str, items: list[Wire]) -> None:
    """Puts items with BatchWriteItem, 25 per call (moto never leaves any unprocessed)."""
    for i in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item_to_client(it)}} for it in items[i : i + 25]]
        answer = ddb.batch_write_item(RequestItems={table: requests})
        assert not answer.get("UnprocessedItems"), answer["UnprocessedItems"]


def scan(ddb: Any, table: str) -> list[Wire]:
    items: list[Wire] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        items += [item_from_client(it) for it in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def exact(item: Wire) -> str:
    """Comparison text: number and string text exactly as stored, set members sorted."""

    def norm(v: Any) -> Any:
        if isinstance(v, dict):
            if len(v) == 1:
                (kind, inner), = v.items()  # fmt: skip
                if kind in ("SS", "NS", "BS"):
                    return {kind: sorted(inner)}
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(item), sort_keys=True, ensure_ascii=False)


def multiset(items: list[Wire]) -> Counter[str]:
    return Counter(exact(it) for it in items)


def write_full_export(
    root: Path, items: list[Wire], export_id: str = "01700000000000-a1b2c3d4"
) -> Path:
    """A full export in AWS's layout (manifests with MD5 and counts, gzip data); its root."""
    base = root / "AWSDynamoDB" / export_id
    (base / "data").mkdir(parents=True)
    (base / "_started").write_bytes(b"")
    half = len(items) // 2
    entries = []
    for n, part in enumerate((items[:half], items[half:])):
        lines = "".join(json.dumps({"Item": it}) + "\n" for it in part).encode()
        name = f"data/part{n}.json.gz"
        data = gzip.compress(lines)
        (base / name).write_bytes(data)
        entries.append(_manifest_entry(f"AWSDynamoDB/{export_id}/{name}", data, len(part)))
    _manifests(base, entries, {"exportType": "FULL_EXPORT", "itemCount": len(items)})
    return base


def write_incremental_export(
    root: Path, records: list[Wire], export_id: str = "01700000900000-e5f6a7b8"
) -> Path:
    """An incremental export: data in the shared AWSDynamoDB/data/, manifests under the id."""
    base = root / "AWSDynamoDB" / export_id
    base.mkdir(parents=True)
    data_dir = root / "AWSDynamoDB" / "data"
    data_dir.mkdir(exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records).encode()
    data = gzip.compress(lines)
    (data_dir / f"{export_id}.json.gz").write_bytes(data)
    entry = _manifest_entry(f"prefix/AWSDynamoDB/data/{export_id}.json.gz", data, len(records))
    summary = {
        "version": "2023-08-01",
        "exportType": "INCREMENTAL_EXPORT",
        "outputView": "NEW_AND_OLD_IMAGES",
        "itemCount": len(records),
    }
    _manifests(base, [entry], summary)
    return base


def _manifest_entry(key: str, data: bytes, count: int) -> dict[str, Any]:
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    return {"itemCount": count, "md5Checksum": md5, "etag": "x", "dataFileS3Key": key}


def _manifests(base: Path, entries: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    files = "".join(json.dumps(e) + "\n" for e in entries)
    (base / "manifest-files.json").write_text(files)
    summary = {"version": "2020-06-30", "outputFormat": "DYNAMODB_JSON", **summary}
    (base / "manifest-summary.json").write_text(json.dumps(summary))


def stream_records(ddb: Any, streams: Any, table: str) -> list[Wire]:
    """Every record of the table's stream, in wire JSON as a Lambda event carries it."""
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[Wire] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = streams.get_records(ShardIterator=it, Limit=1000)
            if not page["Records"]:
                break
            records += [_wire_record(r) for r in page["Records"]]
            it = page.get("NextShardIterator")
    return records


def _wire_record(record: dict[str, Any]) -> Wire:
    body = dict(record["dynamodb"])
    for field in ("Keys", "NewImage", "OldImage"):
        if field in body:
            body[field] = item_from_client(body[field])
    when = body["ApproximateCreationDateTime"]
    if isinstance(when, datetime):
        body["ApproximateCreationDateTime"] = round(when.timestamp(), 3)  # seconds, as Lambda
    return {**record, "dynamodb": body}


def run_cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def signal_cli(
    env: dict[str, str],
    *args: str,
    when: Callable[[], bool],
    signum: int,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ddbshard, sends it `signum` once `when()` holds (polled; the run must still be
    going then), and returns how it ended."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddbshard", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not when() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        assert when(), "the moment to send the signal never came"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def read_shards(dest: Path, target: str) -> list[Wire]:
    items: list[Wire] = []
    for f in sorted((dest / target / "data").glob("*.json")):
        items += [json.loads(line)["Item"] for line in f.read_text().split("\n") if line]
    return items
