"""`keys --from-kinesis` against moto's Kinesis: the same keys file as `keys --from kinesis` on
the same records saved to a file (duplicates and reordering included), a checkpoint that makes
the next run see only newer records, --since read from its timestamp, bad records reported.
(Lineage, throttling, expired iterators and trimming: tests/catchup/test_kinesis.py, which moto
cannot serve.)"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.ddb_faults import FaultyDynamo
from support.ddb_tables import run_cli
from support.fake_kinesis import change

pytestmark = [pytest.mark.server]


@pytest.fixture(scope="module")
def aws() -> Iterator[FaultyDynamo]:
    with FaultyDynamo() as server:
        yield server


@pytest.fixture
def kinesis(aws: FaultyDynamo) -> Any:
    aws.reset()
    client = aws.client("kinesis")
    client.create_stream(StreamName="ddb-changes", ShardCount=2)
    return client


def _changes(start: int, count: int, base_ms: int) -> list[dict[str, Any]]:
    """Per key an insert and an update (every third also deleted), each at its own
    millisecond; one update carries a binary attribute (base64 text inside the record)."""
    out = []
    for n in range(start, start + count):
        at = base_ms + n * 10
        out.append(change(f"USER#{n}", "INSERT", at_ms=at))
        update = change(f"USER#{n}", at_ms=at + 5, v="2.50")
        if n == start:
            update["dynamodb"]["NewImage"]["blob"] = {"B": "AAEC/w=="}
        out.append(update)
        if n % 3 == 0:
            out.append(change(f"USER#{n}", "REMOVE", at_ms=at + 7))
    return out


def _put(client: Any, records: list[dict[str, Any]]) -> None:
    """As Kinesis Data Streams for DynamoDB does: the key's text as the partition key."""
    client.put_records(
        StreamName="ddb-changes",
        Records=[
            {"Data": json.dumps(r).encode(), "PartitionKey": r["dynamodb"]["Keys"]["pk"]["S"]}
            for r in records
        ],
    )


def test_from_kinesis_gives_the_keys_file_of_the_same_records_in_a_file(
    aws: FaultyDynamo, kinesis: Any, tmp_path: Path
) -> None:
    records = _changes(0, 12, int(time.time() * 1000) - 60_000)
    records.append(records[2])  # a duplicate delivery
    records[6], records[7] = records[7], records[6]  # USER#2's update before its insert
    _put(kinesis, records)
    saved = tmp_path / "records.jsonl"
    saved.write_text("".join(json.dumps(r) + "\n" for r in records))
    from_file, live = tmp_path / "file.jsonl", tmp_path / "live.jsonl"
    r = run_cli(aws.env(), "keys", "--from", "kinesis", str(saved), "--out", str(from_file))
    assert r.returncode == 0, r.stderr
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--out", str(live))
    assert r.returncode == 0, r.stderr
    assert live.read_bytes() == from_file.read_bytes()
    entries = [json.loads(x) for x in live.read_text().splitlines()]
    assert len(entries) == 12
    assert all(e["OldImage"] is None for e in entries)  # each key's oldest change: its insert
    assert f"read {len(records)} records: 0 malformed" in r.stdout
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/ddb-changes"
    assert f"read 2 shards of {arn}" in r.stdout
    by_arn = tmp_path / "arn.jsonl"
    r = run_cli(aws.env(), "keys", "--from-kinesis", arn, "--out", str(by_arn))
    assert r.returncode == 0, r.stderr
    assert by_arn.read_bytes() == from_file.read_bytes()


def test_a_second_run_with_the_checkpoint_sees_only_newer_records(
    aws: FaultyDynamo, kinesis: Any, tmp_path: Path
) -> None:
    base = int(time.time() * 1000) - 60_000
    _put(kinesis, _changes(0, 5, base))
    cp = tmp_path / "kinesis.checkpoint"
    first, second = tmp_path / "k1.jsonl", tmp_path / "k2.jsonl"
    args = ("keys", "--from-kinesis", "ddb-changes", "--checkpoint", str(cp))
    r = run_cli(aws.env(), *args, "--out", str(first))
    assert r.returncode == 0, r.stderr
    assert len(first.read_text().splitlines()) == 5
    saved = json.loads(cp.read_text())
    assert saved["stream"].endswith(":stream/ddb-changes") and saved["shards"]
    _put(kinesis, _changes(100, 3, base))
    r = run_cli(aws.env(), *args, "--out", str(second))
    assert r.returncode == 0, r.stderr
    keys = [json.loads(x)["Keys"]["pk"]["S"] for x in second.read_text().splitlines()]
    assert sorted(keys) == ["USER#100", "USER#101", "USER#102"]
    assert "read 7 records" in r.stdout  # 3 inserts, 3 updates, 1 delete
    before = json.loads(cp.read_text())["shards"]
    r = run_cli(aws.env(), *args, "--out", str(second))
    assert r.returncode == 0, r.stderr
    assert second.read_text() == "" and json.loads(cp.read_text())["shards"] == before
    # A checkpoint of another stream is refused; so is an unknown stream.
    kinesis.create_stream(StreamName="other", ShardCount=1)
    r = run_cli(aws.env(), "keys", "--from-kinesis", "other", "--checkpoint", str(cp), "--out",
                str(second))  # fmt: skip
    assert r.returncode == 2 and "the checkpoint is of the stream arn:" in r.stderr, r.stderr
    r = run_cli(aws.env(), "keys", "--from-kinesis", "nope", "--out", str(second))
    assert r.returncode == 2 and "Kinesis stream nope: ResourceNotFoundException" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_since_reads_from_its_time_and_a_too_old_since_is_refused(
    aws: FaultyDynamo, kinesis: Any, tmp_path: Path
) -> None:
    _put(kinesis, _changes(0, 3, int(time.time() * 1000) - 60_000))
    since = time.time() + 0.01
    while time.time() < since + 0.01:  # the next records arrive after --since
        time.sleep(0.001)
    _put(kinesis, _changes(10, 2, int(time.time() * 1000)))
    out = tmp_path / "k.jsonl"
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--since", str(since),
                "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    # AT_TIMESTAMP: the older records are not even read.
    assert "read 4 records: 0 malformed" in r.stdout and "0 before --since" in r.stdout
    keys = sorted(json.loads(x)["Keys"]["pk"]["S"] for x in out.read_text().splitlines())
    assert keys == ["USER#10", "USER#11"]
    old = str(time.time() - 25 * 3600)
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--since", old, "--out",
                str(out))  # fmt: skip
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "keeps records 24 hours" in r.stderr


def test_records_that_are_not_valid_are_reported_and_counted(
    aws: FaultyDynamo, kinesis: Any, tmp_path: Path
) -> None:
    good = _changes(0, 2, int(time.time() * 1000) - 60_000)
    kinesis.put_record(StreamName="ddb-changes", Data=b"{oops", PartitionKey="x")
    bad_image = change("USER#7", at_ms=int(time.time() * 1000) - 1000)
    bad_image["dynamodb"]["NewImage"]["v"] = {"N": "twelve"}
    _put(kinesis, [*good, bad_image])
    out = tmp_path / "k.jsonl"
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--out", str(out))
    assert r.returncode == 1
    assert "ddbshard keys: malformed record: shardId-" in r.stderr
    assert "the Kinesis Data is not JSON" in r.stderr and "(image left out, key kept)" in r.stderr
    assert "read 7 records: 1 malformed, 1 with an invalid image" in r.stdout
    keys = sorted(json.loads(x)["Keys"]["pk"]["S"] for x in out.read_text().splitlines())
    assert keys == ["USER#0", "USER#1", "USER#7"]


def test_an_until_kinesis_may_still_deliver_records_before_is_refused(
    aws: FaultyDynamo, kinesis: Any, tmp_path: Path
) -> None:
    """--until less than 60 s ago: a change made before it may still arrive (Kinesis delivers
    out of order, which is why reading goes on 60 s past --until). Reading the stream to now
    would write a keys file that claims the window and exit 0 without it: refused instead, in
    one line, before the stream is read."""
    now_ms = int(time.time() * 1000)
    _put(kinesis, [change("USER#1", "INSERT", at_ms=now_ms - 2000)])
    out = tmp_path / "k.jsonl"
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000 - 10))
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--until", until,
                "--out", str(out))  # fmt: skip
    assert r.returncode == 2, r.stdout
    assert "--until" in r.stderr and "(60 s later)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    # Once --until is 60 s in the past, the same window is read.
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000 - 61))
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--until", until,
                "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_a_stream_shared_by_two_tables_needs_table_and_then_keeps_its_keys_only(
    aws: FaultyDynamo, kinesis: Any, tmp_path: Path
) -> None:
    """Several tables may send their changes to one Kinesis stream. Their keys in one keys
    file would make sync read and write one table's keys in another: without --table the run
    stops at the second table's first record, before anything is written or checkpointed."""
    base = int(time.time() * 1000) - 60_000
    mine = _changes(0, 4, base)
    theirs = _changes(50, 3, base + 1)
    for r in theirs:
        r["tableName"] = "Other"
    _put(kinesis, [*mine, *theirs])
    out, cp = tmp_path / "k.jsonl", tmp_path / "k.checkpoint"
    args = ("keys", "--from-kinesis", "ddb-changes", "--checkpoint", str(cp), "--out", str(out))
    r = run_cli(aws.env(), *args)
    assert r.returncode == 2, r.stdout
    assert "the records are of more than one table: " in r.stderr and "--table" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    assert not cp.exists() or not json.loads(cp.read_text()).get("shards")
    r = run_cli(aws.env(), *args, "--table", "T")
    assert r.returncode == 0, r.stderr
    keys = sorted(json.loads(x)["Keys"]["pk"]["S"] for x in out.read_text().splitlines())
    assert keys == ["USER#0", "USER#1", "USER#2", "USER#3"]
    n_theirs = len(theirs)
    assert f"read {len(mine) + n_theirs} records: 0 malformed" in r.stdout
    assert f"; {n_theirs} of other tables than T" in r.stdout
    assert "note" not in r.stderr
    # A name no record has (misspelt, or a window without its changes): said, not an error.
    r = run_cli(aws.env(), "keys", "--from-kinesis", "ddb-changes", "--table", "t", "--out",
                str(tmp_path / "none.jsonl"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "note: no record of the table t; the records are of Other, T" in r.stderr
    # The same records saved to a file: the same choice and the same keys.
    saved, from_file = tmp_path / "records.jsonl", tmp_path / "file.jsonl"
    saved.write_text("".join(json.dumps(x) + "\n" for x in [*mine, *theirs]))
    r = run_cli(aws.env(), "keys", "--from", "kinesis", str(saved), "--out", str(from_file))
    assert r.returncode == 2 and "more than one table" in r.stderr
    r = run_cli(aws.env(), "keys", "--from", "kinesis", str(saved), "--table", "Other", "--out",
                str(from_file))  # fmt: skip
    assert r.returncode == 0, r.stderr
    keys = sorted(json.loads(x)["Keys"]["pk"]["S"] for x in from_file.read_text().splitlines())
    assert keys == ["USER#50", "USER#51", "USER#52"]
