"""A small DynamoDB Streams client for what moto's server cannot produce: shard lineage (a parent
closed and split into two children), throttling, expired iterators and trimmed records.

It answers describe_stream, get_shard_iterator and get_records as botocore's client does (records
with B values as bytes and ApproximateCreationDateTime as a datetime; errors as ClientError with
AWS's codes), over shards a test lays out. Faults are armed per operation:

    fake.fail("get_records", "LimitExceededException", times=2)
    fake.expire_next()          # the next get_records call finds its iterator expired
    fake.trim("shard-p")        # the shard and its records are gone (DescribeStream too)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2026-01-01T00:00:00.000"


def record(
    seq: int, pk: str, name: str = "MODIFY", *, at: float, v: str = "1", binary: bool = False
) -> dict[str, Any]:
    """A record as botocore returns it (B as bytes, the time as a datetime)."""
    key: dict[str, Any] = {"B": base64.b64decode(pk)} if binary else {"S": pk}
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": datetime.fromtimestamp(at, UTC),
        "Keys": {"pk": key},
        "SequenceNumber": str(seq),
        "SizeBytes": 10,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if name != "REMOVE":
        body["NewImage"] = {"pk": key, "v": {"N": v}}
    if name != "INSERT":
        body["OldImage"] = {"pk": key, "v": {"N": "0"}}
    return {"eventID": str(seq), "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": body}


@dataclass
class FakeShard:
    id: str
    parent: str | None
    records: list[dict[str, Any]]
    closed: bool = True
    start: int = 0


@dataclass
class FakeStreams:
    shards: list[FakeShard]
    page: int = 2  # records per get_records page, to exercise paging
    describe_page: int = 2  # shards per describe_stream page
    calls: list[str] = field(default_factory=list)
    _faults: list[list[Any]] = field(default_factory=list)  # [op, code, times]
    _expire: int = 0
    _trimmed: set[str] = field(default_factory=set)

    def fail(self, op: str, code: str, times: int = 1) -> None:
        self._faults.append([op, code, times])

    def expire_next(self, times: int = 1) -> None:
        self._expire += times

    def trim(self, shard_id: str) -> None:
        self._trimmed.add(shard_id)

    def _fault(self, op: str) -> None:
        self.calls.append(op)
        for f in self._faults:
            if f[0] == op and f[2] > 0:
                f[2] -= 1
                raise _error(f[1], op)

    def _listed(self) -> list[FakeShard]:
        return [s for s in self.shards if s.id not in self._trimmed]

    def describe_stream(self, StreamArn: str, ExclusiveStartShardId: str | None = None) -> Any:
        self._fault("describe_stream")
        listed = self._listed()
        start = 0
        if ExclusiveStartShardId is not None:
            start = [s.id for s in listed].index(ExclusiveStartShardId) + 1
        chunk = listed[start : start + self.describe_page]
        shards = []
        for s in chunk:
            first = s.start or (int(s.records[0]["dynamodb"]["SequenceNumber"]) if s.records else 1)
            rng = {"StartingSequenceNumber": str(first)}
            if s.closed:
                last = s.records[-1]["dynamodb"]["SequenceNumber"] if s.records else str(first)
                rng["EndingSequenceNumber"] = last
            shard: dict[str, Any] = {"ShardId": s.id, "SequenceNumberRange": rng}
            if s.parent:
                shard["ParentShardId"] = s.parent
            shards.append(shard)
        out: dict[str, Any] = {"StreamArn": StreamArn, "Shards": shards}
        out["StreamViewType"] = "NEW_AND_OLD_IMAGES"
        if start + self.describe_page < len(listed):
            out["LastEvaluatedShardId"] = chunk[-1].id
        return {"StreamDescription": out}

    def get_shard_iterator(
        self, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str = ""
    ) -> Any:
        self._fault("get_shard_iterator")
        shard = self._shard(ShardId)
        if shard is None:
            raise _error("ResourceNotFoundException", "get_shard_iterator")
        if ShardIteratorType == "TRIM_HORIZON":
            pos = 0
        elif ShardIteratorType == "LATEST":
            pos = len(shard.records)
        else:
            seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in shard.records]
            pos = sum(1 for s in seqs if s <= int(SequenceNumber))
        return {"ShardIterator": f"{ShardId}|{pos}"}

    def get_records(self, ShardIterator: str, Limit: int = 1000) -> Any:
        self._fault("get_records")
        shard_id, pos_text = ShardIterator.split("|")
        if self._expire:
            self._expire -= 1
            raise _error("ExpiredIteratorException", "get_records")
        shard = self._shard(shard_id)
        if shard is None:
            raise _error("TrimmedDataAccessException", "get_records")
        pos = int(pos_text)
        taken = shard.records[pos : pos + min(Limit, self.page)]
        out: dict[str, Any] = {"Records": taken}
        end = pos + len(taken)
        if not shard.closed or end < len(shard.records):
            out["NextShardIterator"] = f"{shard_id}|{end}"
        return out

    def _shard(self, shard_id: str) -> FakeShard | None:
        return next((s for s in self._listed() if s.id == shard_id), None)


def _error(code: str, op: str) -> ClientError:
    status = 500 if code == "InternalServerError" else 400
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        op,
    )
