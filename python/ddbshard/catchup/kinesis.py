"""Reading a Kinesis Data Streams for DynamoDB stream directly: what `keys --from-kinesis`
takes its change records from. The reader is streams.StreamReader (its checkpoint, lock,
lineage order, retries and --until) with the Kinesis API in its hooks.

What differs from DynamoDB Streams (Kinesis API reference; AWS-FORMATS.md §5):

- ListShards pages with NextToken, and refuses the stream's name or ARN together with a
  NextToken. A merged shard has two parents (ParentShardId, AdjacentParentShardId).
- A record's Data is the DynamoDB change record as JSON bytes (boto3 has taken off the
  envelope's base64; B values inside are still base64 text, as in a file of decoded records).
  The sequence number and ApproximateArrivalTimestamp are the Kinesis record's; the change's
  time is the inner ApproximateCreationDateTime, in milliseconds or microseconds.
- Records may come out of order and more than once: `keys` orders by time (KeyCollector), and
  at --until the reader reads on for records arriving up to LATE_MICROS later (StreamReader).
- An open shard is read to now when an empty page says MillisBehindLatest 0; a closed one until
  GetRecords gives no NextShardIterator. Iterators expire after 5 minutes.
- Retention is the stream's RetentionPeriodHours (24 hours to a year), so a new checkpoint
  with --since starts each shard AT_TIMESTAMP --since instead of reading the whole year.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

from ddbshard.catchup.changes import Change, RecordError, parse_json, parse_record, to_micros
from ddbshard.catchup.dynamo import RetryPolicy
from ddbshard.catchup.streams import (
    Shard,
    StreamReader,
    Trimmed,
    Unpacked,
    call_retried,
    code_of,
    epoch_micros,
    iso_time,
    lineage_order,
)
from ddbshard.exceptions import InputError

__all__ = ["LATE_MICROS", "KinesisReader", "KinesisStream", "describe_kinesis", "kinesis_client"]

GET_LIMIT: Final = 10_000  # GetRecords' maximum per call
# How much later than --until a change of the window may still arrive. Kinesis Data Streams
# for DynamoDB delivers within seconds; a minute leaves room for retries on AWS's side.
LATE_MICROS: Final = 60 * 1_000_000


def kinesis_client(region: str | None = None) -> Any:
    """A Kinesis client with botocore's retries off: every retry is the reader's, counted and
    bounded like dynamo.client()'s."""
    import boto3
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("kinesis", region_name=region, config=config)


@dataclass(frozen=True)
class KinesisStream:
    arn: str
    retention_hours: int
    created: int | None  # µs since the epoch


def describe_kinesis(
    client: Any, name_or_arn: str, policy: RetryPolicy | None = None
) -> KinesisStream:
    """The stream's ARN (what the checkpoint names, whether the user gave a name or the ARN),
    retention and creation time; InputError when there is no such stream."""
    from botocore.exceptions import ClientError

    which = "StreamARN" if name_or_arn.startswith("arn:") else "StreamName"
    try:
        answer = call_retried(
            client, "describe_stream_summary", policy or RetryPolicy(), **{which: name_or_arn}
        )
    except ClientError as e:
        message = e.response.get("Error", {}).get("Message", "")
        raise InputError(f"Kinesis stream {name_or_arn}: {code_of(e)}: {message}") from e
    summary = answer["StreamDescriptionSummary"]
    return KinesisStream(
        str(summary["StreamARN"]),
        int(summary.get("RetentionPeriodHours", 24)),
        epoch_micros(summary.get("StreamCreationTimestamp")),
    )


class KinesisReader(StreamReader):
    """StreamReader over a Kinesis data stream (`streams` is a boto3 "kinesis" client)."""

    late_micros = LATE_MICROS

    def __init__(self, client: Any, stream: KinesisStream, *args: Any, **kwargs: Any) -> None:
        super().__init__(client, *args, **kwargs)
        assert self.arn == stream.arn, "the checkpoint is loaded for the stream's ARN"
        self.retention_hours = stream.retention_hours
        self.created = stream.created
        self._kept_checked: set[str] = set()  # shards whose position is known to be kept

    def describe(self) -> list[Shard]:
        """Every shard ListShards lists (all pages), parents first."""
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamARN": self.arn}
        while True:
            answer = self._call("list_shards", **kwargs)
            for s in answer.get("Shards", []):
                seqs = s.get("SequenceNumberRange", {})
                shards.append(
                    Shard(
                        s["ShardId"],
                        s.get("ParentShardId"),
                        str(seqs.get("StartingSequenceNumber", "")),
                        seqs.get("EndingSequenceNumber"),
                        s.get("AdjacentParentShardId"),
                    )
                )
            token = answer.get("NextToken")
            if not token:
                return lineage_order(shards)
            kwargs = {"NextToken": token}  # ListShards refuses the stream with a token

    def _begin(self, shards: list[Shard], listed: set[str]) -> None:
        if self.since is not None:
            oldest = int(self.clock() * 1_000_000) - self.retention_hours * 3600 * 1_000_000
            if self.since < oldest:
                raise Trimmed(
                    f"{self.arn} keeps records {self._kept()}: --since {iso_time(self.since)} "
                    f"is before {iso_time(oldest)}, so records since then may already be "
                    "trimmed; cover the gap with an incremental export from --since"
                )
        super()._begin(shards, listed)

    def _first_iterator(self, shard: Shard) -> str:
        # A new checkpoint with --since: a year's retention need not be read to reach it.
        # AT_TIMESTAMP goes by arrival, which is never before the change itself.
        if self.since is not None:
            return self._iterator(shard, "AT_TIMESTAMP")
        return self._iterator(shard, "TRIM_HORIZON")

    def _resume_iterator(self, shard: Shard) -> str:
        # Kinesis has no TrimmedDataAccessException: AFTER_SEQUENCE_NUMBER of a record that has
        # passed the retention silently starts at the oldest record kept, and whatever came
        # between is lost. So, once per shard, the position's own record is looked for: still
        # kept, nothing after it is gone (records leave oldest first); gone, records after it
        # may be too (if the one right after was kept, that cannot be told: said all the same).
        # A checkpoint's positions only: this run's own are minutes old.
        seq = self.positions.get(shard.id)
        if seq is not None and shard.id not in self._kept_checked:
            self._kept_checked.add(shard.id)  # first: an expired iterator resumes from here
            if seq == self.checkpoint.positions.get(shard.id) and not self._still_holds(shard, seq):
                raise self._trimmed(shard)
        return super()._resume_iterator(shard)

    def _still_holds(self, shard: Shard, seq: str) -> bool:
        """Whether the shard still holds the record numbered `seq`."""
        it: str | None = self._iterator(shard, "AT_SEQUENCE_NUMBER", seq)
        while it:
            page = self._get_records(shard, it, limit=1)
            records = page.get("Records", [])
            if records:
                return bool(self._unpack(records[0]).seq == seq)
            if self._at_now(shard, page):
                return False
            it = page.get("NextShardIterator")  # an empty page before the shard's records
        return False  # a closed shard with nothing left at or after it

    def _iterator_args(self, shard: Shard, kind: str, seq: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"StreamARN": self.arn, "ShardId": shard.id}
        kwargs["ShardIteratorType"] = kind
        if seq is not None:
            kwargs["StartingSequenceNumber"] = seq
        if kind == "AT_TIMESTAMP":
            assert self.since is not None
            kwargs["Timestamp"] = self.since / 1_000_000
        return kwargs

    def _get_records(self, shard: Shard, it: str, limit: int = GET_LIMIT) -> dict[str, Any]:
        return super()._get_records(shard, it, min(limit, GET_LIMIT))

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        if op == "get_records":
            # Optional for AWS (the iterator names the stream) but what a resource policy
            # checks, and moto's iterators from a StreamARN need it.
            kwargs["StreamARN"] = self.arn
        return super()._call(op, **kwargs)

    def _at_now(self, shard: Shard, page: dict[str, Any]) -> bool:
        # An empty page with MillisBehindLatest above 0 is a gap in the shard, not its end.
        return bool(page.get("MillisBehindLatest", 0) == 0)

    def _unpack(self, record: Any) -> Unpacked:
        if not isinstance(record, dict):
            return Unpacked(None, None, None, record, "not a Kinesis record")
        seq = record.get("SequenceNumber")
        arrival = epoch_micros(record.get("ApproximateArrivalTimestamp"))
        data = record.get("Data")
        try:
            if not isinstance(data, bytes | str):
                raise ValueError("no Data")
            decoded = parse_json(data)
        except (ValueError, UnicodeDecodeError) as e:
            return Unpacked(seq, None, arrival, None, f"the Kinesis Data is not JSON: {e}")
        if not isinstance(decoded, dict):
            return Unpacked(seq, None, arrival, None, "the Kinesis Data is not a JSON object")
        body = decoded.get("dynamodb")
        when = body.get("ApproximateCreationDateTime") if isinstance(body, dict) else None
        try:
            t = None if when is None else to_micros(when)
        except RecordError:
            t = None  # parse_record says why
        return Unpacked(seq, t, arrival, decoded)

    def _parse(self, got: Unpacked, where: str) -> Change:
        return parse_record("kinesis", got.payload, where)
