"""The stream reader (catchup/streams.py) on what a hostile stream or a damaged checkpoint file
gives it: records too broken to carry a position, checkpoints of the wrong shape. Each must be
one reported problem, never a traceback or a checkpoint a later run cannot use."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ddbshard.catchup.changefiles import Malformed
from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.catchup.streams import Checkpoint, StreamReader
from ddbshard.exceptions import InputError
from support.fake_streams import ARN, FakeShard, FakeStreams, record

NOW = time.time()
FAST = RetryPolicy(max_attempts=3, sleep=lambda s: None)


@pytest.mark.parametrize(
    "mangle",
    ["dynamodb-not-an-object", "record-not-an-object", "no-sequence-number"],
)
def test_a_broken_record_is_malformed_and_the_checkpoint_stays_readable(
    tmp_path: Path, mangle: str
) -> None:
    bad: Any = record(2, "k", at=NOW)
    if mangle == "dynamodb-not-an-object":
        bad["dynamodb"] = "garbage"
    elif mangle == "record-not-an-object":
        bad = ["not", "a", "record"]
    else:
        del bad["dynamodb"]["SequenceNumber"]
    shard = FakeShard("s", None, [record(1, "k", at=NOW), bad], closed=False)
    fake = _Tolerant([shard])
    cp = str(tmp_path / "cp.json")
    reader = StreamReader(fake, Checkpoint.load(cp, ARN), policy=FAST)
    out = list(reader.read())
    assert [type(x).__name__ for x in out] == ["Change", "Malformed"]
    assert isinstance(out[1], Malformed) and out[1].where.startswith("s #")
    reader.commit(reader.progress())
    saved = json.loads(Path(cp).read_text())["shards"]
    assert saved["s"].isdigit(), saved  # a position GetShardIterator can take
    # The next run reads on from the record before it (the broken one is malformed again).
    shard.records.append(record(3, "k", at=NOW))
    again = StreamReader(fake, Checkpoint.load(cp, ARN), policy=FAST)
    assert [type(x).__name__ for x in again.read()] == ["Malformed", "Change"]


class _Tolerant(FakeStreams):
    """The fake stream, positioning AFTER_SEQUENCE_NUMBER past records that have none."""

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str = ""
    ) -> Any:
        if ShardIteratorType != "AFTER_SEQUENCE_NUMBER":
            return super().get_shard_iterator(StreamArn, ShardId, ShardIteratorType)
        (shard,) = [s for s in self.shards if s.id == ShardId]
        seqs = [r["dynamodb"].get("SequenceNumber") if isinstance(r, dict) and isinstance(
            r.get("dynamodb"), dict) else None for r in shard.records]  # fmt: skip
        return {"ShardIterator": f"{ShardId}|{seqs.index(SequenceNumber) + 1}"}


@pytest.mark.parametrize(
    "body",
    [
        {"shards": []},
        {"shards": {"s": None}},
        {"shards": {"s": "12abc"}},
        {"finished": "shard-a"},
        {"finished": 5},
        {"finished": [["x"]]},
    ],
)
def test_a_checkpoint_of_the_wrong_shape_is_one_error(tmp_path: Path, body: dict[str, Any]) -> None:
    cp = tmp_path / "cp.json"
    cp.write_text(json.dumps({"version": 1, "stream": ARN, **body}))
    with pytest.raises(InputError, match="not a stream checkpoint"):
        Checkpoint.load(str(cp), ARN)
