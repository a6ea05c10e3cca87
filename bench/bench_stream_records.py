"""Benchmarks of `ddbshard.stream_records` against what a Lambda handler does without it: a
1,000-record DynamoDB Streams event (NEW_AND_OLD_IMAGES, mixed types, ~500 B images) decoded
by json + base64 for B/BS + boto3's TypeDeserializer on Keys, NewImage and OldImage.

Two inputs: the event as JSON text (the whole decoding, json.loads included, in the baseline),
and the event as the dict Lambda hands a Python handler (the baseline skips json.loads). Each
benchmark measures its baseline in the same run and reports the ratio in `extra_info`;
`compare_stream_records.py` beside this file prints the same numbers as a table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

import ddbshard
from bench_loads import decode_binaries
from ddbshard.synth import make_items

RECORDS = 1_000
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Posts/stream/2026-12-01T00:00:00.000"

_DESERIALIZER = TypeDeserializer()
_IMAGES = ("Keys", "NewImage", "OldImage")


def stream_event(count: int = RECORDS, seed: int = 0) -> dict[str, Any]:
    """A Lambda event of `count` records: one in five an INSERT, one in ten a REMOVE, the rest
    MODIFYs whose old image is another item of the same shape, all with both images the view
    type allows (NEW_AND_OLD_IMAGES)."""
    new = list(make_items(count, seed))
    old = list(make_items(count, seed + 1))
    records = []
    for i, (item, before) in enumerate(zip(new, old, strict=True)):
        name = "INSERT" if i % 5 == 0 else "REMOVE" if i % 10 == 1 else "MODIFY"
        keys = {"pk": item["pk"], "sk": item["sk"]}
        body: dict[str, Any] = {"ApproximateCreationDateTime": 1796598123 + i // 100, "Keys": keys}
        if name != "REMOVE":
            body["NewImage"] = item
        if name != "INSERT":
            body["OldImage"] = {**before, **keys}
        body |= {
            "SequenceNumber": f"{10**20 + i}",
            "SizeBytes": len(json.dumps(item)),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        records.append(stream_record(i, name, body))
    return {"Records": records}


def stream_record(i: int, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Record `i` of an event, as Lambda hands it: `name` and the `dynamodb` object `body`."""
    return {
        "eventID": f"{i:032x}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": body,
        "eventSourceARN": ARN,
    }


def boto3_records(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The baseline on a parsed event: base64 for B/BS (as botocore would have decoded them),
    then TypeDeserializer on each record's Keys, NewImage and OldImage."""
    out = []
    for record in event["Records"]:
        body = record["dynamodb"]
        decoded = {
            field: {k: _DESERIALIZER.deserialize(decode_binaries(v)) for k, v in image.items()}
            for field in _IMAGES
            if (image := body.get(field)) is not None
        }
        out.append(decoded)
    return out


def boto3_text(text: str) -> list[dict[str, Any]]:
    """The baseline on the event's JSON text: json.loads, then `boto3_records`."""
    return boto3_records(json.loads(text))


def same_answer(ours: list[ddbshard.StreamRecord], theirs: list[dict[str, Any]]) -> bool:
    """Our records hold the baseline's images (compared as values), or a speed means nothing."""
    got = [
        {f: i for f, i in zip(_IMAGES, (r.keys, r.new, r.old), strict=True) if i is not None}
        for r in ours
    ]
    return got == theirs


def calls_per_second(fn: Callable[[Any], Any], arg: Any, seconds: float = 1.0) -> float:
    """The best call of at least five, and of as many as `seconds` allow: on a machine shared
    with other work, the fastest call is the one least disturbed by it."""
    best = float("inf")
    calls = 0
    deadline = time.perf_counter() + seconds
    while calls < 5 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
        calls += 1
    return 1 / best


# --------------------------------------------------------------------------------------------
# pytest-benchmark


@pytest.fixture(scope="module")
def event() -> dict[str, Any]:
    return stream_event()


def event_text(event: dict[str, Any]) -> str:
    """The event as Lambda delivers it: compact JSON, raw UTF-8."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


@pytest.fixture(scope="module")
def text(event: dict[str, Any]) -> str:
    return event_text(event)


def test_boto3_event_text(benchmark: Any, text: str) -> None:
    out = benchmark.pedantic(boto3_text, args=(text,), rounds=5, iterations=1)
    assert len(out) == RECORDS
    benchmark.extra_info["records_per_s"] = round(RECORDS / benchmark.stats.stats.min)


@pytest.mark.parametrize("given", ["text", "dict"])
def test_stream_records(benchmark: Any, event: dict[str, Any], text: str, given: str) -> None:
    arg: Any = text if given == "text" else event
    baseline_fn: Callable[[Any], Any] = boto3_text if given == "text" else boto3_records
    assert same_answer(ddbshard.stream_records(arg), baseline_fn(arg))
    baseline = calls_per_second(baseline_fn, arg)
    out = benchmark.pedantic(ddbshard.stream_records, args=(arg,), rounds=10, iterations=1)
    assert len(out) == RECORDS
    ours = 1 / benchmark.stats.stats.min
    benchmark.extra_info["records_per_s"] = round(ours * RECORDS)
    benchmark.extra_info["boto3_records_per_s"] = round(baseline * RECORDS)
    benchmark.extra_info["ratio_vs_boto3"] = round(ours / baseline, 2)
