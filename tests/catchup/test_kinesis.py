"""The Kinesis reader (catchup/kinesis.py) on what moto cannot produce: a split and a merge (two
parents), throttling, expired iterators, trimming, empty pages behind the tip, records arriving
late past --until. The client is tests/support/fake_kinesis.py (botocore's shapes and codes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ddbshard.catchup.changefiles import Malformed
from ddbshard.catchup.changes import Change
from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.catchup.kinesis import LATE_MICROS, KinesisReader, describe_kinesis
from ddbshard.catchup.streams import Checkpoint, Trimmed
from ddbshard.exceptions import InputError
from support.fake_kinesis import ARN, FakeKinesis, KShard, change, put

NOW = int(time.time() * 1000)  # ms
waits: list[float] = []
POLICY = RetryPolicy(max_attempts=5, sleep=waits.append, random=lambda: 1.0)


def lineage() -> FakeKinesis:
    """P split into A and B, which merged into M (open; parents A and, adjacent, B). k1 goes
    P -> A -> M, k2 P -> B -> M. ListShards lists the children first, two per page."""
    p = KShard("shard-p", [put(1, change("k1", "INSERT", at_ms=NOW - 9000)),
                           put(2, change("k2", "INSERT", at_ms=NOW - 8000)),
                           put(3, change("k1", at_ms=NOW - 7000, v="2"))])  # fmt: skip
    a = KShard("shard-a", [put(10, change("k1", at_ms=NOW - 6000, v="3"))], parent="shard-p")
    b = KShard("shard-b", [put(20, change("k2", at_ms=NOW - 5000, v="4"))], parent="shard-p")
    m = KShard("shard-m", [put(30, change("k1", "REMOVE", at_ms=NOW - 4000)),
                           put(31, change("k2", at_ms=NOW - 3000, v="5"))],
               parent="shard-a", adjacent="shard-b", closed=False)  # fmt: skip
    return FakeKinesis([m, b, a, p])


def reader(fake: FakeKinesis, cp: Checkpoint, **kwargs: object) -> KinesisReader:
    return KinesisReader(fake, describe_kinesis(fake, "ddb-changes"), cp, policy=POLICY, **kwargs)


def changes(r: KinesisReader) -> list[Change]:
    out = list(r.read())
    assert all(isinstance(c, Change) for c in out), out
    return [c for c in out if isinstance(c, Change)]


def versions(got: list[Change]) -> list[tuple[str, str]]:
    out = []
    for c in got:
        new = c.new if isinstance(c.new, dict) else {}
        out.append((c.keys["pk"]["S"], new.get("v", {}).get("N", "-")))
    return out


def test_parents_before_children_through_a_split_and_a_merge(tmp_path: Path) -> None:
    fake = lineage()
    r = reader(fake, Checkpoint.load(str(tmp_path / "cp.json"), ARN))
    got = changes(r)
    assert [c.where for c in got] == [
        "shard-p #1", "shard-p #2", "shard-p #3", "shard-a #10", "shard-b #20",
        "shard-m #30", "shard-m #31",
    ]  # fmt: skip
    assert versions(got) == [("k1", "1"), ("k2", "1"), ("k1", "2"), ("k1", "3"), ("k2", "4"),
                             ("k1", "-"), ("k2", "5")]  # fmt: skip
    assert got[0].t == (NOW - 9000) * 1000  # milliseconds, as KDS writes them by default
    assert r.drained
    pages = fake.ops("list_shards")
    assert pages[0] == {"StreamARN": ARN} and all(set(p) == {"NextToken"} for p in pages[1:])
    assert len(pages) == 2
    r.commit(r.progress())
    saved = json.loads((tmp_path / "cp.json").read_text())
    assert saved["stream"] == ARN and saved["shards"] == {"shard-m": "31"}
    assert set(saved["finished"]) == {"shard-p", "shard-a", "shard-b"}


def test_a_second_run_continues_after_the_checkpoint(tmp_path: Path) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    first = reader(fake, Checkpoint.load(cp, ARN))
    for n, _ in enumerate(first.read(), 1):
        if n == 4:  # the caller dealt with 4 records: commit there, stop
            first.commit(first.progress())
            break
    fake.shards[0].records.append(put(32, change("k3", "INSERT", at_ms=NOW - 1000)))
    second = reader(fake, Checkpoint.load(cp, ARN))
    assert [c.where for c in changes(second)] == [
        "shard-b #20",
        "shard-m #30",
        "shard-m #31",
        "shard-m #32",
    ]
    second.commit(second.progress())
    third = reader(fake, Checkpoint.load(cp, ARN))
    assert changes(third) == []


def test_throttling_kms_and_server_errors_are_retried() -> None:
    fake = lineage()
    fake.fail("get_records", "ProvisionedThroughputExceededException", times=2)
    fake.fail("get_records", "KMSThrottlingException", times=1)
    fake.fail("list_shards", "LimitExceededException", times=1)
    fake.fail("get_shard_iterator", "InternalFailure", times=1)
    waits.clear()
    assert len(changes(reader(fake, Checkpoint.load(None, ARN)))) == 7
    assert len(waits) == 5


def test_an_expired_iterator_resumes_after_the_last_record_taken() -> None:
    fake = lineage()
    r = reader(fake, Checkpoint.load(None, ARN))
    got = []
    for c in r.read():
        got.append(c)
        if len(got) == 2:
            fake.expire_next()  # the next page's iterator has expired
    assert [c.where for c in got][:4] == ["shard-p #1", "shard-p #2", "shard-p #3", "shard-a #10"]
    assert len(got) == 7 and r.stats.expired == 1
    after = [k for k in fake.ops("get_shard_iterator") if "StartingSequenceNumber" in k]
    assert after == [
        {"StreamARN": ARN, "ShardId": "shard-p", "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
         "StartingSequenceNumber": "2"}
    ]  # fmt: skip


def test_empty_pages_behind_the_tip_are_not_the_end() -> None:
    fake = lineage()
    fake.shards[0].gaps = 3  # the open shard answers three empty pages before its records
    got = changes(reader(fake, Checkpoint.load(None, ARN)))
    assert [c.where for c in got][-2:] == ["shard-m #30", "shard-m #31"]


def test_since_starts_each_shard_at_its_timestamp() -> None:
    fake = lineage()
    since = (NOW - 6500) * 1000
    got = changes(reader(fake, Checkpoint.load(None, ARN), since=since))
    assert [c.where for c in got] == ["shard-a #10", "shard-b #20", "shard-m #30", "shard-m #31"]
    kinds = {k["ShardIteratorType"] for k in fake.ops("get_shard_iterator")}
    assert kinds == {"AT_TIMESTAMP"}


def test_a_since_older_than_the_retention_is_refused() -> None:
    fake = lineage()
    since = (NOW - 25 * 3600 * 1000) * 1000
    with pytest.raises(Trimmed, match="keeps records 24 hours: --since"):
        list(reader(fake, Checkpoint.load(None, ARN), since=since).read())
    fake.retention_hours = 24 * 365  # a year: the same --since is fine
    assert len(changes(reader(fake, Checkpoint.load(None, ARN), since=since))) == 7
    fake.created = datetime.fromtimestamp(NOW / 1000 - 3600, UTC)  # unless the stream is younger
    with pytest.raises(Trimmed, match=r"was enabled at .* are in no stream"):
        list(reader(fake, Checkpoint.load(None, ARN), since=since).read())


def test_a_gone_parent_whose_child_starts_after_since_is_refused() -> None:
    fake = lineage()
    fake.retention_hours = 24 * 365
    fake.trim("shard-p")
    since = (NOW - 8500) * 1000  # before shard-a's first record: P's records may be lost
    with pytest.raises(Trimmed, match="shard-a's parent shard-p is gone") as e:
        list(reader(fake, Checkpoint.load(None, ARN), since=since).read())
    assert "kept 365 days" in str(e.value)
    since = (NOW - 4500) * 1000  # after both children's first records: nothing lost
    got = changes(reader(fake, Checkpoint.load(None, ARN), since=since))
    assert [c.where for c in got] == ["shard-m #30", "shard-m #31"]


def test_a_checkpointed_shard_gone_from_the_stream_is_trimming(tmp_path: Path) -> None:
    fake = lineage()
    cp = str(tmp_path / "cp.json")
    first = reader(fake, Checkpoint.load(cp, ARN))
    for n, _ in enumerate(first.read(), 1):
        if n == 2:
            first.commit(first.progress())
            break
    fake.trim("shard-p")
    with pytest.raises(Trimmed, match="shard shard-p of the checkpoint is gone"):
        list(reader(fake, Checkpoint.load(cp, ARN)).read())


def test_a_record_of_the_window_arriving_late_is_still_read(tmp_path: Path) -> None:
    until = NOW - 5000
    late = change("k9", "INSERT", at_ms=until - 10)  # made before --until, arrived after
    shard = KShard("shard-0", [put(1, change("k1", at_ms=until - 100)),
                               put(2, change("k2", at_ms=until + 5)),
                               put(3, late, arrival_ms=until + 20),
                               put(4, change("k3", at_ms=until + LATE_MICROS // 1000 + 1))],
                   closed=False)  # fmt: skip
    fake = FakeKinesis([shard])
    cp = str(tmp_path / "cp.json")
    r = reader(fake, Checkpoint.load(cp, ARN), until=until * 1000)
    assert [c.where for c in changes(r)] == ["shard-0 #1", "shard-0 #3"]
    assert not r.drained
    r.commit(r.progress())
    # The position stays before the first record from --until on: the next run reads it,
    # and the late one again (at least once).
    assert json.loads(Path(cp).read_text())["shards"] == {"shard-0": "1"}
    again = reader(fake, Checkpoint.load(cp, ARN))
    assert [c.where for c in changes(again)] == ["shard-0 #2", "shard-0 #3", "shard-0 #4"]


def test_records_that_are_not_valid_are_reported_and_the_run_goes_on() -> None:
    bad_image = change("k3", at_ms=NOW - 10)
    bad_image["dynamodb"]["NewImage"] = {"v": {"N": "not a number"}}
    not_ddb = change("k4", at_ms=NOW - 5)
    not_ddb["eventSource"] = "aws:s3"
    shard = KShard("shard-0", [put(1, change("k1", at_ms=NOW - 30)),
                               put(2, b"{not json", arrival_ms=NOW - 20),
                               put(3, bad_image), put(4, not_ddb),
                               put(5, change("k5", at_ms=NOW))], closed=False)  # fmt: skip
    r = reader(FakeKinesis([shard]), Checkpoint.load(None, ARN))
    got = list(r.read())
    bad = [(m.where, m.reason) for m in got if isinstance(m, Malformed)]
    assert [w for w, _ in bad] == ["shard-0 #2", "shard-0 #4"]
    assert "not JSON" in bad[0][1] and "aws:s3" in bad[1][1]
    kept = [c for c in got if isinstance(c, Change)]
    assert [c.where for c in kept] == ["shard-0 #1", "shard-0 #3", "shard-0 #5"]
    assert kept[1].problem is not None  # the image left out, the key kept
    assert r.progress().positions == {"shard-0": "5"}


def test_an_unknown_stream_is_one_line() -> None:
    with pytest.raises(InputError, match="Kinesis stream nope: ResourceNotFoundException"):
        describe_kinesis(lineage(), "nope", POLICY)


def test_a_merged_shard_waits_for_both_parents() -> None:
    fake = lineage()
    # shard-b stops at --until (its record is from NOW - 5000): shard-m, its adjacent child,
    # is not read in this pass even though its other parent shard-a is finished.
    r = reader(fake, Checkpoint.load(None, ARN), until=(NOW - 5500) * 1000)
    assert [c.where for c in changes(r)][-1] == "shard-a #10"
    assert not r.drained and "shard-a" in r.finished and "shard-b" not in r.finished
    assert {k["ShardId"] for k in fake.ops("get_shard_iterator")} == {
        "shard-p",
        "shard-a",
        "shard-b",
    }


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--from-stream", "T", "--from-kinesis", "S"], "or --from-kinesis, not both"),
        (["--from-kinesis", "S", "x.json"], "--from-kinesis reads the stream itself: no --from"),
        (["--from", "kinesis", "x", "--checkpoint", "c"], "--checkpoint goes with --from-stream"),
    ],
)
def test_usage_errors_are_one_line_before_any_call(
    tmp_path: Path, args: list[str], line: str
) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ddbshard", "keys", *args, "--out", str(tmp_path / "k.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and line in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ("get_records", "KMSAccessDeniedException"),  # an encrypted stream, key not usable
        ("get_records", "KMSDisabledException"),
        ("get_shard_iterator", "KMSNotFoundException"),
        ("list_shards", "ResourceInUseException"),  # a stream still CREATING, or DELETING
        ("get_records", "AccessDeniedException"),
    ],
)
def test_a_refusal_no_retry_can_help_is_one_line_at_once(op: str, code: str) -> None:
    """Not retried (the backoff would only delay the same answer): an InputError naming the
    call, the stream and AWS's code, before any record is yielded for the failing call."""
    fake = lineage()
    fake.fail(op, code, times=99)
    before = len(waits)
    with pytest.raises(InputError, match=f"{op} on {ARN}: {code}"):
        list(reader(fake, Checkpoint.load(None, ARN)).read())
    assert len(fake.ops(op)) == 1 and len(waits) == before


def test_a_gone_parent_whose_child_starts_with_a_foreign_record_goes_by_its_arrival() -> None:
    """Another producer's record first in the child (no change time): its arrival, which is
    never before a change, says the child starts after --since, so P's records may be lost;
    this was taken as "cannot tell" and the window accepted."""
    fake = lineage()
    fake.retention_hours = 24 * 365
    fake.trim("shard-p")
    shard_a = fake.shards[2]
    assert shard_a.id == "shard-a"
    shard_a.records.insert(0, put(9, b'{"producer": "other"}', arrival_ms=NOW - 6500))
    since = (NOW - 8500) * 1000
    with pytest.raises(Trimmed, match="shard-a's parent shard-p is gone"):
        list(reader(fake, Checkpoint.load(None, ARN), since=since).read())


def test_a_checkpointed_position_aged_out_of_an_open_shard_is_trimming(tmp_path: Path) -> None:
    """Kinesis has no TrimmedDataAccessException: an iterator AFTER a position that has
    passed the retention silently starts at the oldest record kept, and the records between
    are lost. The position's own record still there proves nothing after it went; gone, the
    run says the records after it may be trimmed (exit 1) rather than claim them read."""
    shard = KShard("shard-0", [put(n, change(f"k{n}", at_ms=NOW - 9000 + n)) for n in (1, 2, 3)],
                   closed=False)  # fmt: skip
    fake = FakeKinesis([shard])
    cp = str(tmp_path / "cp.json")
    first = reader(fake, Checkpoint.load(cp, ARN))
    assert [c.where for c in changes(first)] == ["shard-0 #1", "shard-0 #2", "shard-0 #3"]
    first.commit(first.progress())
    shard.records += [put(n, change(f"k{n}", at_ms=NOW - 5000 + n)) for n in (4, 5)]
    # Still kept: the next run goes on after it.
    again = reader(fake, Checkpoint.load(cp, ARN))
    assert [c.where for c in changes(again)] == ["shard-0 #4", "shard-0 #5"]
    # The checkpoint's record (3) and the one after it (4) aged out before this run.
    fake.age_out("shard-0", 4)
    late = reader(fake, Checkpoint.load(cp, ARN))
    with pytest.raises(Trimmed, match="shard shard-0 cannot be read after sequence number 3"):
        list(late.read())
