"""The stream reader (catchup/streams.py) on what moto cannot produce: a parent shard closed and
split into two children, throttling, expired iterators, trimmed records, paged DescribeStream;
and its checkpoint. The client is tests/support/fake_streams.py (botocore's shapes and codes)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from ddbshard.catchup.changefiles import Malformed
from ddbshard.catchup.changes import Change
from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.catchup.streams import Checkpoint, StreamReader, Trimmed
from ddbshard.exceptions import ConfigError
from support.fake_streams import ARN, FakeShard, FakeStreams, record

NOW = time.time()
waits: list[float] = []
POLICY = RetryPolicy(max_attempts=5, sleep=waits.append, random=lambda: 1.0)


def lineage() -> FakeStreams:
    """Parent P (closed) split into A and B (A closed, B open); key k1 moves P -> A, k2 P -> B.
    DescribeStream lists the children first and one shard per page."""
    p = FakeShard("shard-p", None, [record(1, "k1", "INSERT", at=NOW - 60),
                                     record(2, "k2", "INSERT", at=NOW - 59),
                                     record(3, "k1", at=NOW - 58, v="2")])  # fmt: skip
    a = FakeShard("shard-a", "shard-p", [record(10, "k1", at=NOW - 50, v="3"),
                                         record(11, "k1", "REMOVE", at=NOW - 49)])  # fmt: skip
    b = FakeShard("shard-b", "shard-p", [record(20, "k2", at=NOW - 48, v="9")], closed=False)
    return FakeStreams([b, a, p], page=2, describe_page=1)


def changes(reader: StreamReader) -> list[Change]:
    out = [c for c in reader.read()]
    assert all(isinstance(c, Change) for c in out), out
    return [c for c in out if isinstance(c, Change)]


def test_parents_are_read_before_children_and_each_key_in_order(tmp_path: Path) -> None:
    fake = lineage()
    reader = StreamReader(fake, Checkpoint.load(str(tmp_path / "cp.json"), ARN), policy=POLICY)
    got = changes(reader)
    assert [c.seq for c in got] == [1, 2, 3, 10, 11, 20]
    assert [c.where for c in got][:2] == ["shard-p #1", "shard-p #2"]
    assert reader.drained
    assert reader.stats.shards_read == {"shard-p", "shard-a", "shard-b"}
    assert fake.calls.count("describe_stream") == 3  # every page
    reader.commit(reader.progress())
    saved = json.loads((tmp_path / "cp.json").read_text())
    assert saved["stream"] == ARN
    assert saved["shards"] == {"shard-b": "20"}
    assert set(saved["finished"]) == {"shard-p", "shard-a"}


def test_a_second_run_continues_exactly_after_the_checkpoint(tmp_path: Path) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    first = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    taken = []
    for c in first.read():
        taken.append(c)
        if len(taken) == 4:  # the caller has dealt with 4 records: commit there, stop
            first.commit(first.progress())
            break
    fake.shards[0].records.append(record(21, "k3", "INSERT", at=NOW - 10))
    second = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    assert [c.seq for c in changes(second)] == [11, 20, 21]


def test_throttling_and_server_errors_are_retried_with_backoff() -> None:
    fake = lineage()
    fake.fail("get_records", "LimitExceededException", times=2)
    fake.fail("describe_stream", "InternalServerError", times=1)
    fake.fail("get_shard_iterator", "ThrottlingException", times=1)
    waits.clear()
    reader = StreamReader(fake, Checkpoint("", ARN), policy=POLICY)
    assert len(changes(reader)) == 6
    # describe, iterator, then two get_records in a row: full jitter at its top (random() = 1)
    assert waits == [0.05, 0.05, 0.05, 0.1]


def test_throttling_past_the_attempts_is_one_error_line() -> None:
    fake = lineage()
    fake.fail("get_records", "ProvisionedThroughputExceededException", times=99)
    reader = StreamReader(fake, Checkpoint("", ARN), policy=POLICY)
    with pytest.raises(
        Exception,
        match=r"still failing after 5 attempts \(the last: ProvisionedThroughput",
    ):
        changes(reader)


def test_an_expired_iterator_is_renewed_after_the_last_record_taken() -> None:
    fake = lineage()
    reader = StreamReader(fake, Checkpoint("", ARN), policy=POLICY)
    stream = reader.read()
    first = [next(stream), next(stream)]  # page 1 of shard-p
    fake.expire_next()
    rest = list(stream)
    assert [c.seq for c in first + rest if isinstance(c, Change)] == [1, 2, 3, 10, 11, 20]
    assert reader.stats.expired == 1


def test_a_window_whose_start_may_be_trimmed_is_refused() -> None:
    fake = lineage()
    fake.trim("shard-p")  # gone: A and B now start the stream, with a parent nobody lists
    since = int((NOW - 3600) * 1_000_000)  # before A's first record (NOW - 50)
    reader = StreamReader(fake, Checkpoint("", ARN), policy=POLICY, since=since)
    with pytest.raises(Trimmed, match=r"shard-p is gone .* may already be trimmed"):
        changes(reader)
    # A --since after the first remaining record loses nothing.
    later = int((NOW - 45) * 1_000_000)
    ok = StreamReader(fake, Checkpoint("", ARN), policy=POLICY, since=later)
    assert [c.seq for c in changes(ok)] == [10, 11, 20]


def test_a_checkpointed_shard_that_is_gone_is_trimming(tmp_path: Path) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    reader = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    stream = reader.read()
    next(stream)
    reader.commit(reader.progress())  # in the middle of shard-p
    fake.trim("shard-p")
    again = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    with pytest.raises(Trimmed, match="shard shard-p of the checkpoint is gone"):
        changes(again)


def test_trimmed_data_at_a_checkpointed_position_is_trimming(tmp_path: Path) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    reader = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    stream = reader.read()
    next(stream)
    reader.commit(reader.progress())
    fake.fail("get_shard_iterator", "TrimmedDataAccessException", times=1)
    again = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    with pytest.raises(Trimmed, match="cannot be read after sequence number 1"):
        changes(again)


def test_a_parent_never_read_and_gone_is_trimming(tmp_path: Path) -> None:
    fake = lineage()
    b = fake.shards[0]
    fake.shards = [b]  # the first run sees only B (its parent listed as gone is fine then)
    cp = str(tmp_path / "cp.json")
    first = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    list(first.read())
    first.commit(first.progress())
    fake.shards.append(FakeShard("shard-c", "shard-x", [record(30, "k", at=NOW)]))
    again = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    with pytest.raises(Trimmed, match="parent shard-x was never read"):
        changes(again)


def test_records_from_until_on_are_not_taken_and_the_checkpoint_stops_before(
    tmp_path: Path,
) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    until = int((NOW - 58) * 1_000_000)  # record 3 of the parent and everything after
    reader = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY, until=until)
    assert [c.seq for c in changes(reader)] == [1, 2]
    assert not reader.drained
    reader.commit(reader.progress())
    rest = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY)
    assert [c.seq for c in changes(rest)] == [3, 10, 11, 20]


def test_a_checkpoint_of_another_stream_is_refused(tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    Checkpoint(str(cp), ARN).save()
    with pytest.raises(ConfigError, match="checkpoint is of the stream"):
        Checkpoint.load(str(cp), ARN + "x")
    assert not list(tmp_path.glob("*.tmp"))


def test_binary_keys_and_images_come_back_as_base64_text() -> None:
    raw = base64.b64encode(b"\x00\xff\x10").decode()
    fake = FakeStreams([FakeShard("s", None, [record(1, raw, "INSERT", at=NOW, binary=True)])])
    (c,) = changes(StreamReader(fake, Checkpoint("", ARN), policy=POLICY))
    assert c.keys == {"pk": {"B": raw}}
    assert isinstance(c.new, dict) and c.new["pk"] == {"B": raw}
    assert c.t is not None and abs(c.t - int(NOW * 1_000_000)) <= 1


def test_a_bad_record_is_reported_with_its_shard_and_sequence_number() -> None:
    bad = record(2, "k", at=NOW)
    bad["dynamodb"]["Keys"] = {"pk": {"S": ""}}
    fake = FakeStreams(
        [FakeShard("s", None, [record(1, "k", at=NOW), bad, record(3, "k", at=NOW)])]
    )
    reader = StreamReader(fake, Checkpoint("", ARN), policy=POLICY)
    out = list(reader.read())
    assert [type(x).__name__ for x in out] == ["Change", "Malformed", "Change"]
    assert isinstance(out[1], Malformed) and out[1].where == "s #2"
    assert "empty" in out[1].reason
    assert reader.stats.malformed == 1
    assert reader.positions == {} and reader.finished == {"s"}  # read past it all the same


def test_from_latest_skips_what_the_stream_holds_now(tmp_path: Path) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    reader = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY, start="latest")
    assert changes(reader) == []
    reader.commit(reader.progress())
    fake.shards[0].records.append(record(21, "k3", "INSERT", at=NOW))
    again = StreamReader(fake, Checkpoint.load(cp, ARN), policy=POLICY, start="latest")
    assert [c.seq for c in changes(again)] == [21]


def test_an_unreachable_streams_endpoint_is_named_not_called_throttling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ddbshard.catchup.streams import call_retried, streams_client
    from ddbshard.exceptions import InputError

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    policy = RetryPolicy(max_attempts=2, sleep=lambda s: None)
    with pytest.raises(InputError) as e:
        call_retried(streams_client("us-east-1"), "describe_stream", policy, StreamArn=ARN)
    assert "throttled" not in str(e.value)
    assert "127.0.0.1:1" in str(e.value) and "after 2 attempts" in str(e.value)
