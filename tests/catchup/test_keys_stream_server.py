"""`keys --from-stream` against moto's DynamoDB Streams: the same keys file as `keys --from
streams` on the same records saved to a file, and a checkpoint that makes the next run see only
newer records. (Lineage, throttling, expired iterators and trimming: tests/catchup/test_streams.py,
which moto cannot serve.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ddbshard.catchup.wire import item_to_client
from support.ddb_faults import FaultyDynamo
from support.ddb_tables import create_table, run_cli, stream_records

pytestmark = [pytest.mark.server]


def _writes(client: Any, start: int, count: int) -> None:
    """Inserts, an update per item (a number whose text must be kept), every third deleted."""
    for n in range(start, start + count):
        item = {"pk": {"S": f"USER#{n}"}, "sk": {"S": "P"}, "v": {"N": "1"}, "kind": {"S": "post"}}
        client.put_item(TableName="Source", Item=item_to_client(item))
        client.update_item(
            TableName="Source",
            Key={"pk": {"S": f"USER#{n}"}, "sk": {"S": "P"}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"N": "2.50"}},
        )
        if n % 3 == 0:
            client.delete_item(TableName="Source", Key={"pk": {"S": f"USER#{n}"}, "sk": {"S": "P"}})


def test_from_stream_gives_the_keys_file_of_the_same_records_in_a_file(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    client = fresh.client()
    create_table(client, "Source", "pk", "sk", stream=True)
    _writes(client, 0, 12)
    records = stream_records(client, fresh.client("dynamodbstreams"), "Source")
    assert len(records) == 12 * 2 + 4
    events = tmp_path / "events.json"
    events.write_text(json.dumps({"Records": records}))
    from_file, from_stream = tmp_path / "file.jsonl", tmp_path / "stream.jsonl"
    r = run_cli(fresh.env(), "keys", "--from", "streams", str(events), "--out", str(from_file))
    assert r.returncode == 0, r.stderr
    r = run_cli(fresh.env(), "keys", "--from-stream", "Source", "--out", str(from_stream))
    assert r.returncode == 0, r.stderr
    assert from_stream.read_bytes() == from_file.read_bytes()
    assert len(from_stream.read_text().splitlines()) == 12
    assert "read 28 records: 0 malformed" in r.stdout
    assert "read 1 shards of arn:aws:dynamodb:" in r.stdout
    deleted = [json.loads(x) for x in from_stream.read_text().splitlines()]
    assert sum(1 for x in deleted if x["OldImage"] is None) == 12  # inserted in the window
    # The stream's ARN works as well as the table's name.
    arn = client.describe_table(TableName="Source")["Table"]["LatestStreamArn"]
    by_arn = tmp_path / "arn.jsonl"
    r = run_cli(fresh.env(), "keys", "--from-stream", arn, "--out", str(by_arn))
    assert r.returncode == 0, r.stderr
    assert by_arn.read_bytes() == from_file.read_bytes()


def test_a_second_run_with_the_checkpoint_sees_only_newer_records(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    client = fresh.client()
    create_table(client, "Source", "pk", "sk", stream=True)
    _writes(client, 0, 5)
    cp = tmp_path / "stream.checkpoint"
    first, second = tmp_path / "k1.jsonl", tmp_path / "k2.jsonl"
    args = ("keys", "--from-stream", "Source", "--checkpoint", str(cp))
    r = run_cli(fresh.env(), *args, "--out", str(first))
    assert r.returncode == 0, r.stderr
    assert len(first.read_text().splitlines()) == 5
    assert json.loads(cp.read_text())["shards"]  # the open shard's last sequence number
    _writes(client, 100, 3)
    r = run_cli(fresh.env(), *args, "--out", str(second))
    assert r.returncode == 0, r.stderr
    keys = [json.loads(x)["Keys"]["pk"]["S"] for x in second.read_text().splitlines()]
    assert sorted(keys) == ["USER#100", "USER#101", "USER#102"]
    assert "read 7 records" in r.stdout  # 3 puts, 3 updates, 1 delete
    # Nothing new: an empty list, the checkpoint where it was.
    before = json.loads(cp.read_text())["shards"]
    r = run_cli(fresh.env(), *args, "--out", str(second))
    assert r.returncode == 0, r.stderr
    assert second.read_text() == ""
    assert json.loads(cp.read_text())["shards"] == before


def test_a_checkpoint_of_another_stream_and_a_table_without_stream_are_refused(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    client = fresh.client()
    create_table(client, "Source", "pk", "sk", stream=True)
    create_table(client, "Plain", "pk")
    out = tmp_path / "k.jsonl"
    r = run_cli(fresh.env(), "keys", "--from-stream", "Plain", "--out", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "has no stream enabled" in r.stderr
    cp = tmp_path / "cp.json"
    cp.write_text(json.dumps({"version": 1, "stream": "arn:other", "shards": {}, "finished": []}))
    r = run_cli(
        fresh.env(), "keys", "--from-stream", "Source", "--checkpoint", str(cp), "--out", str(out)
    )
    assert r.returncode == 2
    assert "the checkpoint is of the stream arn:other" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(fresh.env(), "keys", "--from-stream", "Source", "x.json", "--out", str(out))
    assert r.returncode == 2 and "no --from, no INPUT" in r.stderr


def test_a_table_other_than_the_stream_s_is_refused(fresh: FaultyDynamo, tmp_path: Path) -> None:
    """A DynamoDB stream holds one table's changes and its GetRecords records name none: a
    --table naming another table cannot be honoured (its keys were written as that table's)."""
    client = fresh.client()
    create_table(client, "Source", "pk", "sk", stream=True)
    _writes(client, 0, 2)
    out = tmp_path / "k.jsonl"
    r = run_cli(
        fresh.env(), "keys", "--from-stream", "Source", "--table", "Other", "--out", str(out)
    )
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Source" in r.stderr, r.stderr
    assert not out.exists()
    # Its own table is what it reads anyway.
    r = run_cli(
        fresh.env(), "keys", "--from-stream", "Source", "--table", "Source", "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 2


def test_a_table_arn_reads_the_table_s_latest_stream(fresh: FaultyDynamo, tmp_path: Path) -> None:
    """TABLE_OR_STREAM_ARN: a table's ARN is the table (DescribeTable takes it), not a stream
    ARN to pass to DescribeStream as it is (DynamoDB refuses that; moto read it as the table's,
    and the checkpoint named the table's ARN as its stream)."""
    client = fresh.client()
    create_table(client, "Source", "pk", "sk", stream=True)
    _writes(client, 0, 2)
    table_arn = client.describe_table(TableName="Source")["Table"]["TableArn"]
    stream_arn = client.describe_table(TableName="Source")["Table"]["LatestStreamArn"]
    out, cp = tmp_path / "k.jsonl", tmp_path / "cp.json"
    r = run_cli(
        fresh.env(), "keys", "--from-stream", table_arn, "--checkpoint", str(cp), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(cp.read_text())["stream"] == stream_arn
    assert len(out.read_text().splitlines()) == 2
    kinesis = "arn:aws:kinesis:us-east-1:123456789012:stream/feed"
    r = run_cli(fresh.env(), "keys", "--from-stream", kinesis, "--out", str(out))
    assert r.returncode == 2 and "use --from-kinesis" in r.stderr, r.stderr
