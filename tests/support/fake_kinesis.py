"""A small Kinesis client for what moto's server cannot produce: shard lineage (a split and a
merge), throttling, expired iterators, trimmed shards, empty pages behind the tip.

It answers describe_stream_summary, list_shards, get_shard_iterator and get_records as botocore's
client does (Data as bytes, ApproximateArrivalTimestamp as a datetime, MillisBehindLatest;
errors as ClientError with AWS's codes), over shards a test lays out:

    fake.fail("get_records", "ProvisionedThroughputExceededException", times=2)
    fake.expire_next()          # the next get_records call finds its iterator expired
    fake.trim("shard-p")        # the shard and its records are gone (ListShards too)
    fake.age_out("shard-0", 2)  # its 2 oldest records are gone, the shard still listed
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from support.fake_streams import _error

ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/ddb-changes"


def change(pk: str, name: str = "MODIFY", *, at_ms: int, v: str = "1") -> dict[str, Any]:
    """A change record as Kinesis Data Streams for DynamoDB writes it (time in milliseconds)."""
    key = {"S": pk}
    body: dict[str, Any] = {"ApproximateCreationDateTime": at_ms, "Keys": {"pk": key}}
    if name != "REMOVE":
        body["NewImage"] = {"pk": key, "v": {"N": v}}
    if name != "INSERT":
        body["OldImage"] = {"pk": key, "v": {"N": "0"}}
    body["SizeBytes"] = 20
    return {
        "awsRegion": "us-east-1",
        "eventID": f"{pk}-{at_ms}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "recordFormat": "application/json",
        "tableName": "T",
        "dynamodb": body,
    }


def put(seq: int, data: dict[str, Any] | bytes, *, arrival_ms: int | None = None) -> dict[str, Any]:
    """A GetRecords record holding `data`; it arrives when the change was made unless told."""
    if arrival_ms is None:
        assert isinstance(data, dict)
        arrival_ms = int(data["dynamodb"]["ApproximateCreationDateTime"])
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {
        "SequenceNumber": str(seq),
        "ApproximateArrivalTimestamp": datetime.fromtimestamp(arrival_ms / 1000, UTC),
        "Data": raw,
        "PartitionKey": "p",
    }


@dataclass
class KShard:
    id: str
    records: list[dict[str, Any]]
    parent: str | None = None
    adjacent: str | None = None
    closed: bool = True
    gaps: int = 0  # empty pages (MillisBehindLatest > 0) before the records, as AWS may answer


@dataclass
class FakeKinesis:
    shards: list[KShard]
    retention_hours: int = 24
    created: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    page: int = 2  # records per get_records page
    list_page: int = 2  # shards per list_shards page
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _faults: list[list[Any]] = field(default_factory=list)
    _expire: int = 0
    _trimmed: set[str] = field(default_factory=set)

    def fail(self, op: str, code: str, times: int = 1) -> None:
        self._faults.append([op, code, times])

    def expire_next(self, times: int = 1) -> None:
        self._expire += times

    def trim(self, shard_id: str) -> None:
        self._trimmed.add(shard_id)

    def age_out(self, shard_id: str, count: int) -> None:
        """The shard's `count` oldest records pass the retention: gone, the shard still listed,
        and as Kinesis does, no error for a position among them (AFTER_SEQUENCE_NUMBER of one
        starts at the oldest record kept)."""
        shard = self._shard(shard_id)
        assert shard is not None
        del shard.records[:count]

    def ops(self, op: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == op]

    def _fault(self, op: str, kwargs: dict[str, Any]) -> None:
        self.calls.append((op, kwargs))
        for f in self._faults:
            if f[0] == op and f[2] > 0:
                f[2] -= 1
                raise _error(f[1], op)

    def _listed(self) -> list[KShard]:
        return [s for s in self.shards if s.id not in self._trimmed]

    def describe_stream_summary(self, **kwargs: Any) -> Any:
        self._fault("describe_stream_summary", kwargs)
        if kwargs not in ({"StreamName": "ddb-changes"}, {"StreamARN": ARN}):
            raise _error("ResourceNotFoundException", "describe_stream_summary")
        summary = {"StreamARN": ARN, "StreamName": "ddb-changes"}
        summary["RetentionPeriodHours"] = self.retention_hours  # type: ignore[assignment]
        summary["StreamCreationTimestamp"] = self.created  # type: ignore[assignment]
        return {"StreamDescriptionSummary": summary}

    def list_shards(self, **kwargs: Any) -> Any:
        self._fault("list_shards", kwargs)
        if "NextToken" in kwargs and len(kwargs) > 1:
            raise _error("InvalidArgumentException", "list_shards")  # as AWS refuses it
        listed = self._listed()
        start = int(kwargs.get("NextToken", "0"))
        chunk = listed[start : start + self.list_page]
        shards = []
        for s in chunk:
            rng = {"StartingSequenceNumber": s.records[0]["SequenceNumber"] if s.records else "0"}
            if s.closed:
                rng["EndingSequenceNumber"] = s.records[-1]["SequenceNumber"] if s.records else "0"
            shard: dict[str, Any] = {"ShardId": s.id, "SequenceNumberRange": rng}
            if s.parent:
                shard["ParentShardId"] = s.parent
            if s.adjacent:
                shard["AdjacentParentShardId"] = s.adjacent
            shards.append(shard)
        out: dict[str, Any] = {"Shards": shards}
        if start + self.list_page < len(listed):
            out["NextToken"] = str(start + self.list_page)
        return out

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        self._fault("get_shard_iterator", kwargs)
        shard = self._shard(kwargs["ShardId"])
        if shard is None:
            raise _error("ResourceNotFoundException", "get_shard_iterator")
        kind = kwargs["ShardIteratorType"]
        seqs = [int(r["SequenceNumber"]) for r in shard.records]
        if kind == "TRIM_HORIZON":
            pos, gaps = 0, shard.gaps
        elif kind == "LATEST":
            pos, gaps = len(seqs), 0
        elif kind == "AT_TIMESTAMP":
            when = float(kwargs["Timestamp"])
            stamps = [r["ApproximateArrivalTimestamp"].timestamp() for r in shard.records]
            pos, gaps = sum(1 for t in stamps if t < when), 0
        elif kind == "AT_SEQUENCE_NUMBER":
            pos, gaps = sum(1 for q in seqs if q < int(kwargs["StartingSequenceNumber"])), 0
        else:
            assert kind == "AFTER_SEQUENCE_NUMBER"
            pos, gaps = sum(1 for q in seqs if q <= int(kwargs["StartingSequenceNumber"])), 0
        return {"ShardIterator": f"{shard.id}|{pos}|{gaps}"}

    def get_records(self, **kwargs: Any) -> Any:
        self._fault("get_records", kwargs)
        shard_id, pos_text, gaps_text = kwargs["ShardIterator"].split("|")
        if self._expire:
            self._expire -= 1
            raise _error("ExpiredIteratorException", "get_records")
        shard = self._shard(shard_id)
        if shard is None:
            raise _error("ResourceNotFoundException", "get_records")
        pos, gaps = int(pos_text), int(gaps_text)
        if gaps:
            behind = 1000 if pos < len(shard.records) else 0
            nxt = f"{shard_id}|{pos}|{gaps - 1}"
            return {"Records": [], "NextShardIterator": nxt, "MillisBehindLatest": behind}
        taken = shard.records[pos : pos + min(kwargs.get("Limit", 10_000), self.page)]
        end = pos + len(taken)
        out: dict[str, Any] = {"Records": taken, "MillisBehindLatest": 0}
        if end < len(shard.records):
            out["MillisBehindLatest"] = 1000
        if not shard.closed or end < len(shard.records):
            out["NextShardIterator"] = f"{shard_id}|{end}|0"
        return out

    def _shard(self, shard_id: str) -> KShard | None:
        return next((s for s in self._listed() if s.id == shard_id), None)
