"""A hostile look at `replicate`'s loop and the stream reader under it: the status it shows, the
order a key's records apply in, what a later run does to an earlier run's failed keys, records
and checkpoints that are not what they should be.

The stream is tests/support/fake_streams.py (shapes moto cannot give: out-of-order times,
broken records); the targets are real tables on moto's server, written by sync's engine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ddbshard.catchup.dynamo import Dynamo, RetryPolicy
from ddbshard.catchup.replicator import Replicator
from ddbshard.catchup.routing import Router
from ddbshard.catchup.streams import Checkpoint, StreamReader, lock_checkpoint
from ddbshard.catchup.syncrun import SyncRun
from ddbshard.config import load_config
from support.configs import config_text, target_block
from support.ddb_faults import FaultyDynamo
from support.ddb_tables import create_table, run_cli, scan
from support.fake_streams import ARN, FakeShard, FakeStreams, record

pytestmark = [pytest.mark.server]

NOW = time.time()
FAST = RetryPolicy(max_attempts=3, sleep=lambda s: None)


@pytest.fixture
def fresh(ddb: FaultyDynamo) -> FaultyDynamo:
    ddb.reset()
    create_table(ddb.client(), "Items", "pk")
    return ddb


def make(
    ddb: FaultyDynamo,
    tmp: Path,
    fake: FakeStreams,
    *,
    batch: int = 100,
    clock: Any = time.time,
) -> Replicator:
    """A replicator of `fake` into Items (every item, keyed by pk), checkpoint in `tmp`."""
    config = tmp / "replicate.toml"
    config.write_text(config_text(tmp / "src", tmp / "out", target_block("Items", None, ("pk",))))
    router = Router(load_config(config))
    sync = SyncRun(router, Dynamo(ddb.client(), FAST), None, ("pk",))
    checkpoint = Checkpoint.load(str(tmp / "cp.json"), ARN)
    reader = StreamReader(fake, checkpoint, policy=FAST)
    failed = str(tmp / "failed.jsonl")
    return Replicator(
        reader,
        sync,
        router,
        failed_keys=failed,
        batch_records=batch,
        clock=clock,
        err=io.StringIO(),
    )


def items(ddb: FaultyDynamo) -> dict[str, str]:
    return {it["pk"]["S"]: it["v"]["N"] for it in scan(ddb.client(), "Items")}


def test_the_lag_shown_during_a_pass_is_the_backlog_not_zero(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """Ten-minute-old records applied two per batch: the status line in between must show a
    lag of about ten minutes, and 0 only once the pass has drained the stream."""
    old = [record(n, f"k{n}", "INSERT", at=NOW - 600 + n) for n in range(1, 9)]
    fake = FakeStreams([FakeShard("s", None, old, closed=False)])
    rep = make(fresh, tmp_path, fake, batch=2)
    seen: list[float] = []
    rep.run_pass(lambda: seen.append(rep.lag()))
    assert len(seen) == 5  # after each of the four full batches, and at the end
    assert all(lag > 500 for lag in seen[:3]), seen
    assert seen[-1] == 0.0 and rep.lag() == 0.0  # drained: nothing left to read
    assert rep.caught_up(0.0) is False  # the pass applied records: not yet "nothing new"


@pytest.mark.parametrize("times", ["later-record-earlier-time", "later-record-no-time"])
def test_a_keys_records_apply_in_stream_order_whatever_their_times(
    fresh: FaultyDynamo, tmp_path: Path, times: str
) -> None:
    """ApproximateCreationDateTime is approximate (and optional in a record): within a key the
    stream's order is the truth, so the last record's image is what the target must hold."""
    first = record(1, "k", "INSERT", at=NOW - 10, v="1")
    second = record(2, "k", at=NOW - 20, v="2")
    if times == "later-record-no-time":
        del second["dynamodb"]["ApproximateCreationDateTime"]
    fake = FakeStreams([FakeShard("s", None, [first, second])])
    rep = make(fresh, tmp_path, fake)
    rep.run_pass()
    assert items(fresh) == {"k": "2"}


def test_a_later_run_keeps_the_failed_keys_an_earlier_run_wrote(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """The checkpoint passes a failed key once it is in the failed-keys file: a restart that
    fails another key must not replace the file, or the first key is lost for good."""
    bad1 = record(1, "AAAA", "INSERT", at=NOW - 5, binary=True)  # Items' pk is S: refused
    fake = FakeStreams([FakeShard("s", None, [bad1, record(2, "ok", "INSERT", at=NOW - 4)])])
    fake.shards[0].closed = False
    rep = make(fresh, tmp_path, fake)
    rep.run_pass()
    failed = tmp_path / "failed.jsonl"
    assert len(failed.read_text().splitlines()) == 1
    fake.shards[0].records.append(record(3, "BBBB", "INSERT", at=NOW - 3, binary=True))
    again = make(fresh, tmp_path, fake)
    again.run_pass()
    keys = [json.loads(line)["Keys"]["pk"]["B"] for line in failed.read_text().splitlines()]
    assert keys == ["AAAA", "BBBB"]


def test_the_status_counts_refused_keys_as_failed(fresh: FaultyDynamo, tmp_path: Path) -> None:
    bad = record(1, "AAAA", "INSERT", at=NOW - 5, binary=True)
    fake = FakeStreams([FakeShard("s", None, [bad, record(2, "ok", "INSERT", at=NOW - 4)])])
    rep = make(fresh, tmp_path, fake)
    rep.run_pass()
    assert len(rep.sync.failed_lines) == 1
    assert rep.status(1.0).endswith("failed 1"), rep.status(1.0)


def cli(
    ddb: FaultyDynamo, tmp: Path, *args: str, table: str = "Source"
) -> subprocess.CompletedProcess[str]:
    config = tmp / "replicate.toml"
    config.write_text(config_text(tmp / "src", tmp / "out", target_block("Items", None, ("pk",))))
    return run_cli(ddb.env(), "replicate", str(config), "--source-table", table, *args, cwd=tmp)


@pytest.fixture
def source(fresh: FaultyDynamo) -> FaultyDynamo:
    """Source (with a NEW_AND_OLD_IMAGES stream) holding five items, and Items empty."""
    client = fresh.client()
    create_table(client, "Source", "pk", stream=True)
    for n in range(5):
        client.put_item(TableName="Source", Item={"pk": {"S": f"k{n}"}, "v": {"N": "1"}})
    return fresh


def test_a_second_run_on_a_checkpoint_in_use_is_refused_in_one_line(
    source: FaultyDynamo, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    config = tmp_path / "replicate.toml"
    config.write_text(
        config_text(tmp_path / "src", tmp_path / "out", target_block("Items", None, ("pk",)))
    )
    args = ["replicate", str(config), "--source-table", "Source", "--checkpoint", str(cp)]
    first = subprocess.Popen(
        [sys.executable, "-m", "ddbshard", *args, "--quiet"],
        env=source.env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not cp.exists() and time.monotonic() < deadline:  # its first pass is committed
            assert first.poll() is None
            time.sleep(0.05)
        r = cli(source, tmp_path, "--checkpoint", str(cp), "--until-caught-up")
        assert r.returncode == 2, r.stderr
        (line,) = r.stderr.strip().splitlines()
        assert "another run is reading the stream with this checkpoint (pid " in line, line
        assert first.poll() is None  # the first one goes on
    finally:
        first.kill()  # -9: the kernel releases its lock
        first.wait()
    r = cli(source, tmp_path, "--checkpoint", str(cp), "--until-caught-up")
    assert r.returncode == 0, r.stderr


def test_a_checkpoint_location_that_cannot_be_written_is_refused_before_any_write(
    source: FaultyDynamo, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    r = cli(
        source, tmp_path, "--checkpoint", str(tmp_path / "file" / "cp.json"), "--until-caught-up"
    )
    assert r.returncode == 2 and "cannot lock the checkpoint" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = cli(
        source, tmp_path, "--failed-keys", str(tmp_path / "file" / "f.jsonl"), "--until-caught-up"
    )
    assert r.returncode == 2 and "--failed-keys" in r.stderr, r.stderr
    assert items(source) == {}  # nothing written before the refusal
    # A folder that does not exist yet is made, as for every other output.
    r = cli(
        source,
        tmp_path,
        "--checkpoint",
        str(tmp_path / "new" / "deeper" / "cp.json"),
        "--until-caught-up",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "deeper" / "cp.json").exists()
    assert len(items(source)) == 5


def test_keys_from_stream_refuses_a_checkpoint_in_use_too(
    source: FaultyDynamo, tmp_path: Path
) -> None:
    cp = tmp_path / "cp.json"
    lock_checkpoint(str(cp))  # held by this process, as a running replicate or keys would
    out = tmp_path / "k.jsonl"
    args = ("keys", "--from-stream", "Source", "--checkpoint", str(cp), "--out", str(out))
    r = run_cli(source.env(), *args)
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "another run is reading the stream with this checkpoint" in line
    assert not out.exists() and not cp.exists()


def test_a_since_before_the_stream_was_enabled_is_refused_by_keys_and_replicate(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """Writes made before the stream existed are in no stream: not trimmed, but just as lost
    to a list or a replica that starts at --since."""
    client = fresh.client()
    create_table(client, "Source", "pk")
    since = datetime.now(UTC).isoformat()
    client.put_item(TableName="Source", Item={"pk": {"S": "unseen"}, "v": {"N": "1"}})
    spec = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    client.update_table(TableName="Source", StreamSpecification=spec)
    client.put_item(TableName="Source", Item={"pk": {"S": "seen"}, "v": {"N": "1"}})
    out = tmp_path / "k.jsonl"
    args = ("keys", "--from-stream", "Source", "--since", since, "--out", str(out))
    r = run_cli(fresh.env(), *args)
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "was enabled at" in line and "changes made in between are in no stream" in line
    assert not out.exists()
    r = cli(fresh, tmp_path, "--since", since, "--until-caught-up")
    assert r.returncode == 1, r.stderr
    assert "changes made in between are in no stream" in r.stderr.strip().splitlines()[-1]
    assert items(fresh) == {}
    # A --since after the stream was enabled loses nothing: accepted.
    later = datetime.now(UTC).isoformat()
    r = cli(fresh, tmp_path, "--since", later, "--until-caught-up")
    assert r.returncode == 0, r.stderr


def test_a_record_with_an_invalid_image_is_reported_and_counted(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """keys reports such a record and exits 1; replicate applied it without a word, though an
    invalid OldImage means a copy under an old key may be left where nobody looks."""
    bad = record(2, "k", at=NOW - 4, v="2")
    bad["dynamodb"]["OldImage"]["v"] = {"N": "not a number"}
    fake = FakeStreams([FakeShard("s", None, [record(1, "k", "INSERT", at=NOW - 5), bad])])
    rep = make(fresh, tmp_path, fake)
    rep.run_pass()
    assert items(fresh) == {"k": "2"}  # the key is applied all the same
    assert rep.counts.malformed == 1
    assert isinstance(rep.err, io.StringIO)
    assert "malformed record: s #2: " in rep.err.getvalue()
    assert "(image left out, key kept)" in rep.err.getvalue()


def test_a_shard_that_splits_between_passes_is_finished_before_its_children(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """Pass 1 reads the open parent to now; it then takes more writes, closes and splits, and
    its iterator (kept between passes) expires: pass 2 finishes it from the last record taken,
    then reads the children, and each key ends in its last state."""
    parent = FakeShard("p", None, [record(1, "a", "INSERT", at=NOW - 9)], closed=False)
    fake = FakeStreams([parent])
    rep = make(fresh, tmp_path, fake, batch=2)
    rep.run_pass()
    assert items(fresh) == {"a": "1"}
    parent.records += [record(2, "a", at=NOW - 8, v="2"), record(3, "b", "INSERT", at=NOW - 7)]
    parent.closed = True
    left = FakeShard("l", "p", [record(10, "a", at=NOW - 6, v="3")], closed=False)
    right = FakeShard("r", "p", [record(20, "b", "REMOVE", at=NOW - 5)], closed=False)
    fake.shards = [right, left, parent]
    fake.expire_next()
    rep.run_pass()
    assert items(fresh) == {"a": "3"}
    assert rep.reader.stats.expired == 1
    saved = json.loads((tmp_path / "cp.json").read_text())
    assert saved["shards"] == {"l": "10", "r": "20"} and saved["finished"] == ["p"]
    # A restart from that checkpoint finds nothing new: caught up once two passes in a row
    # found nothing (one empty answer is not proof, GetRecords may need several calls).
    again = make(fresh, tmp_path, fake)
    again.run_pass()
    assert again.counts.records == 0 and not again.caught_up(0.0)
    again.run_pass()
    assert again.counts.records == 0 and again.caught_up(0.0)


class _Gappy(FakeStreams):
    """The fake stream, answering the first read at `gap` (shard id, position) with an empty
    page and a NextShardIterator, as AWS may: "If there are no stream records available in the
    portion of the shard that the iterator points to, GetRecords returns an empty list. Note
    that it might take multiple calls to get to a portion of the shard that contains stream
    records." (DynamoDB Streams API reference, GetRecords)."""

    gap: tuple[str, int] | None = None

    def get_records(self, ShardIterator: str, Limit: int = 1000) -> Any:
        shard_id, pos = ShardIterator.split("|")
        if self.gap == (shard_id, int(pos)):
            self.gap = None
            self.calls.append("get_records")
            return {"Records": [], "NextShardIterator": ShardIterator}
        return super().get_records(ShardIterator, Limit)


def test_an_empty_page_in_a_closed_shard_is_not_its_end(
    fresh: FaultyDynamo, tmp_path: Path
) -> None:
    """A closed shard is read until GetRecords gives no NextShardIterator: an empty page on
    the way is not "now" (that holds for open shards only). Stopping there left the rest of the
    parent and all its children for a later pass, while this pass said the stream was drained."""
    parent = FakeShard(
        "p", None, [record(1, "a", "INSERT", at=NOW - 9), record(2, "a", at=NOW - 8, v="2")]
    )
    child = FakeShard("c", "p", [record(10, "a", at=NOW - 7, v="3")], closed=False)
    fake = _Gappy([parent, child], page=1)
    fake.gap = ("p", 1)
    rep = make(fresh, tmp_path, fake)
    rep.run_pass()
    assert items(fresh) == {"a": "3"}
    assert rep.reader.finished == {"p"} and rep.reader.drained


def test_the_last_line_counts_the_failed_keys_the_file_lists(
    source: FaultyDynamo, tmp_path: Path
) -> None:
    """Items lacking the target's key attribute are refused; a second run refuses one more and
    must say the file now lists the first run's too."""
    create_table(source.client(), "ByX", "x")
    config = tmp_path / "x.toml"
    config.write_text(
        config_text(tmp_path / "src", tmp_path / "out", target_block("ByX", None, ("x",)))
    )
    failed = tmp_path / "failed.jsonl"
    args = ("replicate", str(config), "--source-table", "Source", "--failed-keys", str(failed))
    r = run_cli(source.env(), *args, "--until-caught-up", "--quiet", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"keys not applied (5): {failed}"
    source.client().put_item(TableName="Source", Item={"pk": {"S": "k9"}, "v": {"N": "1"}})
    r = run_cli(source.env(), *args, "--until-caught-up", "--quiet", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"keys not applied (1): {failed}; with 5 from earlier runs it lists 6", last
    assert len(failed.read_text().splitlines()) == 6
