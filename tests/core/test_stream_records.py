"""`ddbshard.stream_records` against boto3's TypeDeserializer, on real captured events and on
events written here for each rule.

The oracle reads a record the way a Lambda handler does without ddbshard (json, base64 for
B/BS, TypeDeserializer on Keys/NewImage/OldImage), with DynamoDB's rules from `support.oracle`
and the record's time from `catchup.changes.to_micros`; every event is fed as its exact text
and as the dict `json.loads` makes of it, which must give the same records and refusals.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

import ddbshard
from ddbshard.catchup.changes import to_micros
from support.oracle import REALDATA, deserialize_item, exact, item_refuses
from support.s3_server import reset

EVENT_NAMES = ("INSERT", "MODIFY", "REMOVE")
KEY_TYPES = ("S", "N", "B")


# --------------------------------------------------------------------------------------------
# The oracle


class Refused(Exception):
    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason, self.path = reason, path


def _time(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refused("not_a_record", "dynamodb.ApproximateCreationDateTime")
    try:
        d = Decimal(str(value))
        ok = d.is_finite() and Decimal(10**8) <= d < Decimal(10**17)
    except ArithmeticError:
        ok = False
    if not ok:
        raise Refused("not_a_record", "dynamodb.ApproximateCreationDateTime")
    return to_micros(value)


def _image(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    reason = item_refuses(value)
    if reason is not None:
        raise Refused(reason, path)
    return deserialize_item(value)


def _keys(value: Any) -> dict[str, Any]:
    keys = _image(value, "dynamodb.Keys")
    if keys is None or not 1 <= len(value) <= 2:
        raise Refused("not_a_record", "dynamodb.Keys")
    for v in value.values():
        ((tag, payload),) = v.items()
        if tag not in KEY_TYPES:
            raise Refused("wrong_key_type", "dynamodb.Keys")
        if payload == "":
            raise Refused("empty_key", "dynamodb.Keys")
    return keys


def oracle(record: Any) -> dict[str, Any]:
    """The fields of a record as boto3 reads them, or Refused for the first rule it breaks in
    the record's own order (the order ddbshard reads it in)."""
    if not isinstance(record, dict):
        raise Refused("not_a_record", "")
    got: dict[str, Any] = {}
    body_seen = False
    for field, value in record.items():
        if field == "eventName":
            if value not in EVENT_NAMES:
                raise Refused("not_a_record", "eventName")
            got["name"] = value
        elif field == "eventSource" and value not in (None, "aws:dynamodb"):
            raise Refused("not_a_record", "eventSource")
        elif field == "recordFormat" and value not in (None, "application/json"):
            raise Refused("not_a_record", "recordFormat")
        elif field == "dynamodb":
            if not isinstance(value, dict):
                raise Refused("not_a_record", "dynamodb")
            body_seen = True
            for name, v in value.items():
                if name == "Keys":
                    got["keys"] = _keys(v)
                elif name == "NewImage":
                    got["new"] = _image(v, "dynamodb.NewImage")
                elif name == "OldImage":
                    got["old"] = _image(v, "dynamodb.OldImage")
                elif name == "ApproximateCreationDateTime":
                    got["time_us"] = _time(v)
    if "name" not in got or not body_seen or "keys" not in got:
        raise Refused("not_a_record", "")
    body = record["dynamodb"]
    arn = record.get("eventSourceARN")
    table = record.get("tableName")
    if table is None and isinstance(arn, str) and ":table/" in arn:
        table = arn.split(":table/", 1)[1].split("/", 1)[0]
    return {
        "name": got["name"],
        "keys": got["keys"],
        "new": got.get("new"),
        "old": got.get("old"),
        "time_us": got.get("time_us"),
        "sequence": body.get("SequenceNumber"),
        "event_id": record.get("eventID"),
        "source_arn": arn,
        "table": table,
        "view_type": body.get("StreamViewType"),
    }


def _records_of(event: Any) -> tuple[str, list[Any]]:
    """(the prefix of a record's path, the records) of an event in any of the four shapes."""
    if isinstance(event, list):
        return "", event
    if isinstance(event, dict) and "Records" in event:
        return "Records", event["Records"]
    return "record", [event]


def _path(prefix: str, index: int, inner: str) -> str:
    where = "record" if prefix == "record" else f"{prefix}[{index}]"
    if prefix == "record":
        return inner or "record"
    return f"{where}.{inner}" if inner else where


def _fields(r: ddbshard.StreamRecord) -> dict[str, Any]:
    d = r.as_dict()
    del d["index"]
    for image in ("keys", "new", "old"):
        d[image] = None if d[image] is None else exact(d[image])
    return d


def _expect(f: dict[str, Any]) -> dict[str, Any]:
    f = dict(f)
    for image in ("keys", "new", "old"):
        f[image] = None if f[image] is None else exact(f[image])
    return f


def assert_reads_like_oracle(event: Any, text: str | bytes | None = None) -> int:
    """stream_records(event), and of its text, equal the oracle's reading, or both raise the
    oracle's refusal for the first bad record; with `problems`, every bad record is listed and
    the good ones kept. Returns how many records were checked."""
    prefix, records = _records_of(event)
    expected: list[dict[str, Any] | Refused] = []
    for record in records:
        try:
            expected.append(oracle(record))
        except Refused as e:
            expected.append(e)
    inputs: list[Any] = [event] if text is None else [event, text]
    for given in inputs:
        first_bad = next((i for i, e in enumerate(expected) if isinstance(e, Refused)), None)
        if first_bad is None:
            got = ddbshard.stream_records(given)
            assert [r.index for r in got] == list(range(len(records)))
            assert [_fields(r) for r in got] == [_expect(e) for e in expected]  # type: ignore[arg-type]
        else:
            bad = expected[first_bad]
            assert isinstance(bad, Refused)
            with pytest.raises(ddbshard.StreamRecordError) as info:
                ddbshard.stream_records(given)
            assert (info.value.reason, info.value.index) == (bad.reason, first_bad)
            assert info.value.path == _path(prefix, first_bad, bad.path)
            assert str(info.value).startswith(info.value.path + ": ")
        problems: list[ddbshard.StreamRecordError] = []
        kept = ddbshard.stream_records(given, problems=problems)
        assert [r.index for r in kept] == [
            i for i, e in enumerate(expected) if not isinstance(e, Refused)
        ]
        assert [(p.index, p.reason) for p in problems] == [
            (i, e.reason) for i, e in enumerate(expected) if isinstance(e, Refused)
        ]
    return len(records)


# --------------------------------------------------------------------------------------------
# Real events


def _is_stream_doc(doc: Any) -> bool:
    def is_record(r: Any) -> bool:
        return isinstance(r, dict) and ("dynamodb" in r or "kinesis" in r)

    if isinstance(doc, dict) and isinstance(doc.get("Records"), list):
        doc = doc["Records"]
    if isinstance(doc, list):
        return bool(doc) and all(is_record(r) for r in doc)
    return is_record(doc)


def _real_events() -> list[Any]:
    if not REALDATA.is_dir():
        return [
            pytest.param(
                None,
                None,
                id="no-realdata",
                marks=pytest.mark.skip(
                    reason=f"real data not found at {REALDATA} (expected beside the repository)"
                ),
            )
        ]
    cases = []
    for path in sorted(REALDATA.rglob("*.json*")):
        if path.name.endswith(".export.jsonl") or ".expected." in path.name:
            continue
        rel = path.relative_to(REALDATA).as_posix()
        raw = path.read_bytes()
        if path.suffix == ".jsonl":
            docs = [(f"{rel}:L{n}", line) for n, line in enumerate(raw.splitlines(), 1)]
        else:
            docs = [(rel, raw)]
        for case_id, text in docs:
            try:
                doc = json.loads(text)
            except ValueError:
                if b'"eventName"' in text:  # a broken record the source keeps
                    cases.append(pytest.param(None, text, id=case_id))
                continue
            if _is_stream_doc(doc):
                cases.append(pytest.param(doc, text, id=case_id))
    return cases


REAL_EVENTS = _real_events()


@pytest.mark.parametrize(("event", "text"), REAL_EVENTS)
def test_real_event_reads_like_boto3(event: Any, text: bytes) -> None:
    if event is None:  # JSON cut short: refused as such, whatever records came before
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(text, problems=[])
        assert info.value.reason in ddbshard._core.REASONS
        return
    prefix, records = _records_of(event)
    if any(isinstance(r, dict) and "kinesis" in r for r in records):
        # A Lambda Kinesis event: its records are base64 inside `kinesis.data`, not read here.
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(text)
        assert (info.value.reason, info.value.path) == ("not_a_record", f"{prefix}[0].eventSource")
        return
    assert_reads_like_oracle(event, text)


def test_real_events_were_found(realdata: Path) -> None:
    ids = [p.id for p in REAL_EVENTS]
    folders = {i.split("/", 1)[0] for i in ids}
    assert {
        "aws-lambda-go",
        "aws-sam-cli",
        "powertools-lambda-python",
        "awsdocs-dynamodb-developer-guide",
        "clickhouse-docs",
        "startree-docs",
        "crate-commons-codec",
        "kyopark2014-data-analytics-for-businfo",
    } <= folders
    assert "startree-docs/kds-records.pretty.json" in ids  # a bare list of records
    read = 0
    for p in REAL_EVENTS:
        event, _ = p.values
        if event is not None:
            read += len(_records_of(event)[1])
    assert read >= 25
    # aws-lambda-go's event: record 1 holds a BS with a member twice (DynamoDB refuses it).
    raw = (realdata / "aws-lambda-go" / "dynamodb-event.json").read_bytes()
    with pytest.raises(ddbshard.StreamRecordError) as info:
        ddbshard.stream_records(raw)
    assert (info.value.reason, info.value.path) == (
        "duplicate_set_member",
        "Records[1].dynamodb.NewImage",
    )
    assert info.value.sequence == json.loads(raw)["Records"][1]["dynamodb"]["SequenceNumber"]


# --------------------------------------------------------------------------------------------
# Events written here

ALL_TYPES = {
    "pk": {"S": "user#1"},
    "sk": {"N": "-12.50"},
    "s": {"S": 'héllo "quoted"\n\u2603'},
    "n": {"N": "1E+125"},
    "b": {"B": base64.b64encode(b"\x00\xffbinary").decode()},
    "t": {"BOOL": True},
    "f": {"BOOL": False},
    "null": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "1.0E-130", "-99"]},
    "bs": {"BS": [base64.b64encode(b"x").decode(), base64.b64encode(b"yz").decode()]},
    "l": {"L": [{"S": "x"}, {"N": "0"}, {"L": []}, {"M": {}}]},
    "m": {
        "M": {
            "inner": {"M": {"deep": {"BS": ["AAEqQQ=="]}}},
            "list": {"L": [{"NS": ["3"]}, {"B": "QSoBAA=="}, {"NULL": True}]},
        }
    },
}
KEYS = {"pk": ALL_TYPES["pk"], "sk": ALL_TYPES["sk"]}
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2026-01-01T00:00:00.000"


def record(
    name: str = "INSERT",
    *,
    keys: Any = None,
    new: Any = None,
    old: Any = None,
    when: Any = 1700000000,
    seq: str = "100000000000000000001",
    view: str = "NEW_AND_OLD_IMAGES",
    **body: Any,
) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": when,
        "Keys": KEYS if keys is None else keys,
    }
    if new is not None:
        dynamodb["NewImage"] = new
    if old is not None:
        dynamodb["OldImage"] = old
    dynamodb |= {"SequenceNumber": seq, "SizeBytes": 100, "StreamViewType": view, **body}
    return {
        "eventID": f"id-{seq}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": dynamodb,
        "eventSourceARN": ARN,
    }


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def test_every_type_reads_like_boto3() -> None:
    changed = {**ALL_TYPES, "n": {"N": "2"}}
    ev = event(
        record("INSERT", new=ALL_TYPES, seq="1"),
        record("MODIFY", new=changed, old=ALL_TYPES, seq="2"),
        record("REMOVE", old=changed, seq="3"),
    )
    assert assert_reads_like_oracle(ev, json.dumps(ev)) == 3
    (insert, modify, remove) = ddbshard.stream_records(json.dumps(ev))
    assert insert.new == ddbshard.loads(json.dumps(ALL_TYPES))
    assert exact(insert.new) == exact(deserialize_item(ALL_TYPES))
    assert insert.new is not None and insert.new["b"] == b"\x00\xffbinary"
    assert insert.new["bs"] == {b"x", b"yz"} and insert.new["ns"] == {
        Decimal("1"),
        Decimal("1.0E-130"),
        Decimal("-99"),
    }
    assert insert.old is None and remove.new is None
    assert modify.old == insert.new
    assert (insert.name, modify.name, remove.name) == EVENT_NAMES
    assert (insert.table, insert.source_arn, insert.event_id) == ("Orders", ARN, "id-1")
    assert (insert.sequence, insert.view_type) == ("1", "NEW_AND_OLD_IMAGES")
    assert insert.keys == {"pk": "user#1", "sk": Decimal("-12.50")}


def test_keys_only_records_have_no_images() -> None:
    ev = event(
        record("INSERT", view="KEYS_ONLY", seq="1"),
        record("MODIFY", view="KEYS_ONLY", seq="2"),
        record("REMOVE", view="KEYS_ONLY", seq="3"),
    )
    got = ddbshard.stream_records(json.dumps(ev))
    assert [(r.name, r.new, r.old, r.view_type) for r in got] == [
        (n, None, None, "KEYS_ONLY") for n in EVENT_NAMES
    ]
    assert all(r.keys == {"pk": "user#1", "sk": Decimal("-12.50")} for r in got)
    assert_reads_like_oracle(ev, json.dumps(ev))


def test_images_given_as_null_are_absent() -> None:
    ev = event(record("REMOVE", old={"pk": {"S": "a"}}, NewImage=None, keys={"pk": {"S": "a"}}))
    (r,) = ddbshard.stream_records(json.dumps(ev))
    assert (r.new, r.old) == (None, {"pk": "a"})


@pytest.mark.parametrize(
    ("when", "micros"),
    [
        (1479499740, 1479499740_000000),  # Lambda: epoch seconds
        (1693997155.0, 1693997155_000000),  # Lambda sometimes writes a float
        (1664559083.123456, 1664559083_123456),
        ("1479499740", 1479499740_000000),
        (1719347890250, 1719347890250_000),  # Kinesis: milliseconds
        (1719347890250647, 1719347890250647),  # Kinesis: microseconds
        (10**8, 10**14),  # the first second told apart from milliseconds (1973)
        (None, None),
    ],
)
def test_time_units(when: Any, micros: int | None) -> None:
    ev = event(record(when=when, new=KEYS))
    for given in (ev, json.dumps(ev)):
        (r,) = ddbshard.stream_records(given)
        assert r.time_us == micros
    if when is not None:
        assert micros == to_micros(when)


def test_time_without_the_member_is_none() -> None:
    rec = record(new=KEYS)
    del rec["dynamodb"]["ApproximateCreationDateTime"]
    assert ddbshard.stream_records(rec)[0].time_us is None


@pytest.mark.parametrize("when", [99_999_999, 10**17, -1479499740, "1E+999999999", "soon", True])
def test_times_no_stream_writes_are_refused(when: Any) -> None:
    ev = event(record(when=when, new=KEYS))
    for given in (ev, json.dumps(ev)):
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(given)
        assert (info.value.reason, info.value.path) == (
            "not_a_record",
            "Records[0].dynamodb.ApproximateCreationDateTime",
        )


def test_boto3_values_datetimes_and_bytes_read_like_lambda_json() -> None:
    # What boto3's GetRecords returns: B as bytes, the time as an aware datetime.
    moment = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    boto = record(new={"pk": {"S": "a"}, "b": {"B": b"\x00\x01"}, "bs": {"BS": [b"x", b"y"]}})
    boto["dynamodb"]["ApproximateCreationDateTime"] = moment
    lam = record(new={"pk": {"S": "a"}, "b": {"B": "AAE="}, "bs": {"BS": ["eA==", "eQ=="]}})
    lam["dynamodb"]["ApproximateCreationDateTime"] = 1796598123.456789
    (got_boto,) = ddbshard.stream_records({"Records": [boto], "NextShardIterator": "x"})
    (got_lam,) = ddbshard.stream_records(json.dumps(lam))
    assert got_boto == got_lam
    assert got_boto.time_us == 1796598123_456789
    naive = record(new=KEYS, when=datetime(2026, 12, 7, 1, 2, 3))
    assert ddbshard.stream_records(naive)[0].time_us == int(
        datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC).timestamp() * 1_000_000
    )


def test_dict_and_text_give_equal_records() -> None:
    ev = event(
        record("INSERT", new=ALL_TYPES, seq="1"),
        record("MODIFY", new=ALL_TYPES, old=ALL_TYPES, seq="2", when=1700000000.5),
    )
    text = json.dumps(ev, indent=2)
    by_dict = ddbshard.stream_records(ev)
    assert by_dict == ddbshard.stream_records(text)
    assert by_dict == ddbshard.stream_records(text.encode())
    assert by_dict != ddbshard.stream_records(json.dumps(event(record("INSERT", new=ALL_TYPES))))


@pytest.mark.parametrize(
    "shape",
    ["lambda", "get_records", "list", "one"],
)
def test_the_four_shapes_of_event(shape: str) -> None:
    recs = [record("INSERT", new=KEYS, seq="1"), record("REMOVE", old=KEYS, seq="2")]
    given: Any = {
        "lambda": {"Records": recs},
        "get_records": {"NextShardIterator": "it", "Records": recs},
        "list": recs,
        "one": recs[0],
    }[shape]
    want = ddbshard.stream_records({"Records": recs})
    got = ddbshard.stream_records(json.dumps(given))
    assert got == (want[:1] if shape == "one" else want)
    assert ddbshard.stream_records(given) == got


def test_an_event_without_records_gives_none() -> None:
    assert ddbshard.stream_records('{"Records": []}') == []
    assert ddbshard.stream_records([]) == []


BAD_IMAGES = [
    {"n": {"N": "1.5x"}},  # invalid_number
    {"n": {"N": "1E+126"}},
    {"b": {"B": "AAE"}},  # invalid_base64
    {"ss": {"SS": []}},  # empty_set
    {"ns": {"NS": ["1", "1.0"]}},  # duplicate_set_member
    {"z": {"NULL": False}},  # invalid_null
    {"x": {"Q": "1"}},  # unknown_type
    {"n": {"N": 5}},  # wrong_value_type
    {"": {"S": "x"}},  # empty_attribute_name
    {"deep": json.loads('{"L":[' * 33 + "]}" * 33)},  # too_deep
]


@pytest.mark.parametrize("image", BAD_IMAGES)
@pytest.mark.parametrize("field", ["NewImage", "OldImage"])
def test_invalid_values_are_refused_as_loads_refuses_them(field: str, image: Any) -> None:
    with pytest.raises(ddbshard.ParseError) as by_loads:
        ddbshard.loads(json.dumps(image))
    good = record("MODIFY", new=KEYS, old=KEYS, seq="1")
    bad = record("MODIFY", new=KEYS, old=KEYS, seq="2")
    bad["dynamodb"][field] = image
    ev = event(good, bad, good)
    for given in (ev, json.dumps(ev)):
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(given)
        e = info.value
        assert e.reason == by_loads.value.reason
        assert (e.index, e.path, e.sequence, e.event_id) == (
            1,
            f"Records[1].dynamodb.{field}",
            "2",
            "id-2",
        )
    assert_reads_like_oracle(ev, json.dumps(ev))


@pytest.mark.parametrize(
    ("mutate", "reason", "path"),
    [
        (lambda r: r.pop("dynamodb"), "not_a_record", "Records[1]"),
        (lambda r: r.update(eventName="UPSERT"), "not_a_record", "Records[1].eventName"),
        (lambda r: r.pop("eventName"), "not_a_record", "Records[1]"),
        (lambda r: r.update(dynamodb=[]), "not_a_record", "Records[1].dynamodb"),
        (lambda r: r["dynamodb"].pop("Keys"), "not_a_record", "Records[1]"),
        (lambda r: r["dynamodb"].update(Keys={}), "not_a_record", "Records[1].dynamodb.Keys"),
        (
            lambda r: r["dynamodb"].update(
                Keys={"a": {"S": "1"}, "b": {"S": "2"}, "c": {"S": "3"}}
            ),
            "not_a_record",
            "Records[1].dynamodb.Keys",
        ),
        (
            lambda r: r["dynamodb"].update(Keys={"a": {"BOOL": True}}),
            "wrong_key_type",
            "Records[1].dynamodb.Keys",
        ),
        (
            lambda r: r["dynamodb"].update(Keys={"a": {"S": ""}}),
            "empty_key",
            "Records[1].dynamodb.Keys",
        ),
        (
            lambda r: r.update(eventSource="aws:kinesis"),
            "not_a_record",
            "Records[1].eventSource",
        ),
        (
            lambda r: r["dynamodb"].update(SequenceNumber=17),
            "not_a_record",
            "Records[1].dynamodb.SequenceNumber",
        ),
    ],
)
def test_bad_structure_is_refused_with_the_index(mutate: Any, reason: str, path: str) -> None:
    bad = record(new=KEYS, seq="2")
    mutate(bad)
    ev = event(record(new=KEYS, seq="1"), bad)
    for given in (ev, json.dumps(ev)):
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(given)
        assert (info.value.reason, info.value.index, info.value.path) == (reason, 1, path)
        assert isinstance(info.value, ddbshard.ParseError)
    if reason != "not_a_record" or "SequenceNumber" not in path:
        assert_reads_like_oracle(ev, json.dumps(ev))


def test_a_record_that_is_not_an_object_and_a_member_named_twice() -> None:
    with pytest.raises(ddbshard.StreamRecordError) as info:
        ddbshard.stream_records([record(new=KEYS), 3])
    assert (info.value.reason, info.value.path) == ("not_a_record", "[1]")
    one = json.dumps(record(new=KEYS))
    twice = one.replace('"eventName": "INSERT"', '"eventName": "INSERT", "eventName": "REMOVE"')
    assert twice != one
    with pytest.raises(ddbshard.StreamRecordError) as info:
        ddbshard.stream_records(twice)
    assert (info.value.reason, info.value.path, info.value.index) == (
        "not_a_record",
        "eventName",
        0,
    )


def test_problems_keeps_the_good_records_and_lists_the_bad() -> None:
    bad_number = record(new={"pk": {"S": "a"}, "n": {"N": "NaN"}}, seq="2")
    no_body = record(seq="4")
    del no_body["dynamodb"]
    ev = event(
        record(new=KEYS, seq="1"), bad_number, record(new=KEYS, seq="3"), no_body, record(seq="5")
    )
    problems: list[ddbshard.StreamRecordError] = []
    got = ddbshard.stream_records(json.dumps(ev), problems=problems)
    assert [r.sequence for r in got] == ["1", "3", "5"]
    assert [r.index for r in got] == [0, 2, 4]
    assert [(p.index, p.sequence, p.reason) for p in problems] == [
        (1, "2", "invalid_number"),
        (3, None, "not_a_record"),
    ]
    # What a Lambda handler returns for a partial batch failure.
    failures = [{"itemIdentifier": p.sequence} for p in problems]
    assert failures[0] == {"itemIdentifier": "2"}


def test_json_that_cannot_be_read_past_ends_the_call_even_with_problems() -> None:
    text = json.dumps(event(record(new=KEYS, seq="1"), record(new=KEYS, seq="2")))
    broken = text[: text.rindex('"eventName"')] + '"eventName": }]}'
    for cut in (broken, text[:-5], text + "x", text.replace("INSERT", "INS\x01ERT", 1)):
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(cut, problems=[])
        assert info.value.reason == "invalid_json"
    with pytest.raises(ddbshard.StreamRecordError) as info:
        ddbshard.stream_records(b'{"Records": [' + b"\xff" + b"]}")
    assert (info.value.reason, info.value.index, info.value.path) == ("invalid_utf8", None, "event")


@pytest.mark.parametrize("given", [3, None, {1: 2}, [float("nan")], {"Records": [object()]}])
def test_other_python_values_are_refused(given: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        ddbshard.stream_records(given)


def test_record_objects() -> None:
    (r,) = ddbshard.stream_records(record(new=KEYS))
    assert r.as_dict() == {
        "index": 0,
        "name": "INSERT",
        "keys": {"pk": "user#1", "sk": Decimal("-12.50")},
        "new": {"pk": "user#1", "sk": Decimal("-12.50")},
        "old": None,
        "time_us": 1700000000_000000,
        "sequence": "100000000000000000001",
        "event_id": "id-100000000000000000001",
        "source_arn": ARN,
        "table": "Orders",
        "view_type": "NEW_AND_OLD_IMAGES",
    }
    assert repr(r).startswith("StreamRecord(index=0, name='INSERT', keys={")
    with pytest.raises(AttributeError):
        r.name = "REMOVE"  # type: ignore[misc]
    assert r != "INSERT"


# --------------------------------------------------------------------------------------------
# boto3's GetRecords, from the moto server


@pytest.mark.server
def test_get_records_response_from_boto3(moto_endpoint: str) -> None:
    reset(moto_endpoint)
    ddb = boto3.client("dynamodb")
    streams = boto3.client("dynamodbstreams")
    ddb.create_table(
        TableName="StreamRecords",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    item = {**ALL_TYPES, "b": {"B": b"\x00\xff"}, "bs": {"BS": [b"x", b"y"]}}
    item.pop("sk")
    ddb.put_item(TableName="StreamRecords", Item=item)
    ddb.put_item(TableName="StreamRecords", Item={**item, "n": {"N": "7"}})
    ddb.delete_item(TableName="StreamRecords", Key={"pk": item["pk"]})
    arn = ddb.describe_table(TableName="StreamRecords")["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    it = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    page = streams.get_records(ShardIterator=it)
    assert isinstance(page["Records"][0]["dynamodb"]["ApproximateCreationDateTime"], datetime)
    got = ddbshard.stream_records(page)
    assert [r.name for r in got] == list(EVENT_NAMES)
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    for r, raw in zip(got, page["Records"], strict=True):
        body = raw["dynamodb"]
        for field, image in (("keys", "Keys"), ("new", "NewImage"), ("old", "OldImage")):
            want = (
                {k: des.deserialize(v) for k, v in body[image].items()} if image in body else None
            )
            got_image = getattr(r, field)
            assert (got_image is None) == (want is None)
            if want is not None:
                assert exact(got_image) == exact(want)
        when = body["ApproximateCreationDateTime"]
        assert r.time_us == round(when.timestamp() * 1_000_000)
        assert r.sequence == body["SequenceNumber"]


def test_the_collector_is_left_as_it_was_found() -> None:
    # stream_records and loads hold the cyclic GC off while they build, and must put it back.
    import gc

    bad = event(record(new={"pk": {"S": "a"}, "n": {"N": "x"}}))
    assert gc.isenabled()
    ddbshard.stream_records(event(record(new=ALL_TYPES)))
    ddbshard.loads(json.dumps(ALL_TYPES))
    assert gc.isenabled()
    with pytest.raises(ddbshard.StreamRecordError):
        ddbshard.stream_records(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        ddbshard.stream_records(event(record(new=ALL_TYPES)))
        ddbshard.loads(json.dumps(ALL_TYPES))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_only_immutable_values_are_shared() -> None:
    # Equal short texts may come back as one str or Decimal object; containers never are.
    image = {"pk": {"S": "a"}, "s": {"SS": ["x"]}, "l": {"L": [{"S": "x"}]}, "m": {"M": {}}}
    one, two = ddbshard.stream_records(
        event(
            record(new=image, keys={"pk": {"S": "a"}}), record(new=image, keys={"pk": {"S": "a"}})
        )
    )
    assert one.new == two.new
    assert one.new is not None and two.new is not None
    for field in ("s", "l", "m"):
        assert one.new[field] is not two.new[field]
    one.new["s"].add("y")
    assert two.new["s"] == {"x"}


def test_every_cut_and_byte_flip_is_read_or_refused_never_crashed() -> None:
    # Any prefix of an event, and the event with any one byte replaced, either reads or raises
    # StreamRecordError with a known reason, with and without problems=.
    text = json.dumps(
        event(
            record("MODIFY", new=ALL_TYPES, old=KEYS, seq="1"),
            record("REMOVE", old=KEYS, seq="2"),
        ),
        separators=(",", ":"),
    ).encode()
    variants = [text[:n] for n in range(len(text))]
    variants += [text[:n] + b"\x00" + text[n + 1 :] for n in range(0, len(text), 3)]
    variants += [text[:n] + b"}" + text[n + 1 :] for n in range(1, len(text), 5)]
    for v in variants:
        for problems in (None, []):
            try:
                got = ddbshard.stream_records(v, problems=problems)
            except ddbshard.StreamRecordError as e:
                assert e.reason in ddbshard._core.REASONS, v
            else:
                assert all(isinstance(r, ddbshard.StreamRecord) for r in got)


# --------------------------------------------------------------------------------------------
# Large events: read on a thread of their own while the caller's thread builds the objects

# Well past the size (32 KB) from which stream_records overlaps reading and building.
LARGE = 64 * 1024
ESCAPED_NUMBER = "7770777"


def _varied(i: int) -> dict[str, Any]:
    """An image that differs from record to record: names and values that recur (shared) and
    unique ones, long texts and texts with escapes, maps whose names come in a new order or
    cannot be shared (escaped, or over 64 bytes), numbers of every form."""
    image = dict(ALL_TYPES)
    image["pk"] = {"S": f"user#{i % 7}"}
    image["u"] = {"S": f"unique-{i}"}
    numbers = ["1E+125", str(i), f"-{i}.50", "0", "-0", "12345678901234567890123", ESCAPED_NUMBER]
    image["n"] = {"N": numbers[i % len(numbers)]}
    image["long"] = {"S": "x" * 70 + str(i % 3)}
    image["esc"] = {"S": f"line\n{i % 4}"}
    if i % 3 == 0:
        image["extra"] = {"M": {"a": {"N": str(i % 5)}, "b": {"SS": [f"v{i % 2}", "w"]}}}
    if i % 4 == 0:
        image = dict(reversed(list(image.items())))
    if i % 5 == 0:
        image["na\u00efve\n"] = {"S": "escaped name"}
    if i % 11 == 0:
        image["k" * 70] = {"BOOL": True}
    return image


def _large_records(count: int = 150) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        name = EVENT_NAMES[i % 3]
        out.append(
            record(
                name,
                new=_varied(i) if name != "REMOVE" else None,
                old=_varied(i + 1) if name != "INSERT" else None,
                seq=str(10**20 + i),
                when=1700000000 + i,
                view="KEYS_ONLY" if i % 13 == 0 else "NEW_AND_OLD_IMAGES",
            )
        )
    return out


def _escaped(text: str) -> str:
    """The event's JSON with a number written with escapes (the same number to any reader)."""
    escaped = "".join(f"\\u{ord(c):04x}" for c in ESCAPED_NUMBER)
    return text.replace(f'"{ESCAPED_NUMBER}"', f'"{escaped}"')


def _large_text(ev: dict[str, Any]) -> str:
    text = _escaped(json.dumps(ev))
    assert len(text) > LARGE and "\\u0037" in text
    return text


def _order(value: Any) -> Any:
    """The names of every map, in order, at every depth (exact() compares maps as sets)."""
    if isinstance(value, dict):
        return [(k, _order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_order(v) for v in value]
    return None


def test_a_large_event_reads_like_boto3() -> None:
    ev = event(*_large_records())
    assert assert_reads_like_oracle(ev, _large_text(ev)) == 150


def test_a_large_event_gives_what_its_records_give_alone() -> None:
    records = _large_records()
    got = ddbshard.stream_records(_large_text(event(*records)))
    assert len(got) == len(records)
    for i, (r, alone) in enumerate(zip(got, records, strict=True)):
        # One record: read and built inline, by the converter loads uses.
        (want,) = ddbshard.stream_records(_escaped(json.dumps(event(alone))))
        _assert_same_record(r, i, want)


def test_the_real_records_in_one_large_event_read_as_each_alone(realdata: Path) -> None:
    # Every real DynamoDB record, in one event large enough to be read on a second thread
    # (repeated as need be), against each read alone on the calling thread.
    real = []
    for param in REAL_EVENTS:
        doc = param.values[0]
        if doc is not None:
            real += [r for r in _records_of(doc)[1] if isinstance(r, dict) and "dynamodb" in r]
    assert len(real) > 20
    records = real * (1 + LARGE // len(json.dumps(real)))
    text = json.dumps(event(*records))
    assert len(text) > LARGE
    assert assert_reads_like_oracle(event(*records), text) == len(records)
    problems: list[ddbshard.StreamRecordError] = []
    got = {r.index: r for r in ddbshard.stream_records(text, problems=problems)}
    refused = {p.index: p for p in problems}
    for i, alone in enumerate(records):
        one: list[ddbshard.StreamRecordError] = []
        want = ddbshard.stream_records(json.dumps(event(alone)), problems=one)
        if one:
            assert (refused[i].reason, refused[i].path) == (
                one[0].reason,
                one[0].path.replace("Records[0]", f"Records[{i}]"),
            )
            continue
        _assert_same_record(got[i], i, want[0])


def _python(
    *args: str, stdin: str, env: dict[str, str] | None = None, timeout: int = 60
) -> subprocess.CompletedProcess[str]:
    """`python -c` with `args` in a process of its own, `stdin` its input, `env` added to
    this process's environment."""
    return subprocess.run(
        [sys.executable, "-c", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def _assert_same_record(got: ddbshard.StreamRecord, i: int, alone: ddbshard.StreamRecord) -> None:
    """Record `i` of a large event equals the same record read alone (index 0), its images'
    key order included."""
    fields, expected = got.as_dict(), alone.as_dict()
    assert fields.pop("index") == i and expected.pop("index") == 0
    assert {k: _expect_any(v) for k, v in fields.items()} == {
        k: _expect_any(v) for k, v in expected.items()
    }
    for image in ("keys", "new", "old"):
        assert _order(fields[image]) == _order(expected[image])


def _expect_any(value: Any) -> Any:
    return exact(value) if isinstance(value, dict) else value


def test_bad_records_of_a_large_event_are_refused_or_listed_in_order() -> None:
    records = _large_records()
    bad_number = record(new={"pk": {"S": "a"}, "n": {"N": "NaN"}}, seq="bad-1")
    no_body = record(seq="bad-2")
    del no_body["dynamodb"]
    bad_binary = record(new={"pk": {"S": "a"}, "b": {"B": "not base64!"}}, seq="bad-3")
    records[5], records[90], records[149] = bad_number, no_body, bad_binary
    ev = event(*records)
    assert assert_reads_like_oracle(ev, _large_text(ev)) == 150


def test_a_map_holding_a_map_of_its_own_names_in_a_large_event() -> None:
    # The inner map is made first and its names become a shape the outer map, of the same
    # names, must not take again: maps of new shapes come after it (this once raised a
    # PanicException, "shapes numbered in order").
    nested = {"a": {"M": {"a": {"M": {"a": {"S": "x"}}}}}}
    records = [record(new=nested, seq=str(i)) for i in range(2)] + _large_records()
    ev = event(*records)
    assert assert_reads_like_oracle(ev, _large_text(ev)) == len(records)


def test_json_that_cannot_be_read_past_ends_a_large_event() -> None:
    # Late (the builder has most records made by then) or early (the reader stops at once): the
    # call raises for that record, records before it built or not, with or without problems=.
    text = _large_text(event(*_large_records()))
    late = text.rindex('"eventName"')
    early = text.index('"eventName"', 1000)
    cuts = [
        (text[:-5], 149),
        (text[:late] + '"eventName": }]}', 149),
        (text[:early] + "]" + text[early:], 1),
    ]
    for cut, index in cuts:
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(cut, problems=[])
        assert (info.value.reason, info.value.index) == ("invalid_json", index)
        with pytest.raises(ddbshard.StreamRecordError) as info:
            ddbshard.stream_records(cut)
        assert info.value.index == index


def test_the_containers_of_a_large_event_are_its_own() -> None:
    # Maps of one shape share their names' str objects, never a container.
    got = ddbshard.stream_records(_large_text(event(*_large_records())))
    images = [r.new for r in got if r.new is not None]
    first, second = images[0], images[1]
    assert first is not second and first["m"] is not second["m"]
    assert first["l"] is not second["l"] and first["ss"] is not second["ss"]
    before = [exact(image) for image in images[1:]]
    first["pk"] = "changed"
    first["m"]["inner"]["deep"] = "changed"
    first["ss"].add("changed")
    assert [exact(image) for image in images[1:]] == before


_CANONICAL = """
def canonical(value):
    # repr, but sets in sorted order: their order changes with each process's hash seed.
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {canonical(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(canonical(v) for v in value) + "]"
    if isinstance(value, set):
        return "{" + ", ".join(sorted(repr(v) for v in value)) + "}"
    return repr(value)
"""
_READ_IN_A_LOOP = (
    _CANONICAL
    + """
import os, sys
import ddbshard
if sys.argv[1] == "one":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
text = sys.stdin.read()
first = canonical([r.as_dict() for r in ddbshard.stream_records(text)])
print(first, flush=True)
for _ in range(int(sys.argv[2])):
    ddbshard.stream_records(text)
"""
)


def _canonical(value: Any) -> str:
    scope: dict[str, Any] = {}
    exec(_CANONICAL, scope)
    return str(scope["canonical"](value))


def _reader_thread_seen(cpus: str, calls: int) -> tuple[str, bool]:
    """Runs stream_records on a large event `calls` times in a child process bound to one CPU
    (`cpus="one"`) or not, and polls the child's threads until it ends: whether one of them
    was ever the reader thread (named ddbshard-records, 15 characters of it in comm)."""
    text = _large_text(event(*_large_records()))
    with subprocess.Popen(
        [sys.executable, "-c", _READ_IN_A_LOOP, cpus, str(calls)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(text)
        child.stdin.close()
        records = child.stdout.readline().strip()
        seen = False
        tasks = Path(f"/proc/{child.pid}/task")
        while child.poll() is None and not seen:
            for task in list(tasks.glob("*")):
                # A thread may end between the listing and the read.
                with contextlib.suppress(OSError):
                    seen |= (task / "comm").read_text().strip() == "ddbshard-record"
        assert child.wait(timeout=60) == 0
    return records, seen


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_a_large_event_on_one_cpu_is_read_on_the_calling_thread() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this machine runs the tests on one CPU")
    text = _large_text(event(*_large_records()))
    expected = _canonical([r.as_dict() for r in ddbshard.stream_records(text)])
    records, seen = _reader_thread_seen("all", 400)
    assert records == expected and seen
    records, seen = _reader_thread_seen("one", 40)
    assert records == expected and not seen


def test_a_large_event_is_read_on_the_calling_thread_when_no_thread_can_start() -> None:
    # A stack larger than any address space (Rust's threads take theirs from RUST_MIN_STACK):
    # the reader thread cannot start, as under a limit on threads or on memory, and the call
    # reads the records on its own thread instead of failing with "cannot start a thread".
    text = _large_text(event(*_large_records()))
    expected = _canonical([r.as_dict() for r in ddbshard.stream_records(text)])
    child = _python(_READ_IN_A_LOOP, "all", "0", stdin=text, env={"RUST_MIN_STACK": str(2**60)})
    assert (child.returncode, child.stderr) == (0, "")
    assert child.stdout.strip() == expected


_READ_UNTIL_INTERRUPTED = """
import signal, sys
from pathlib import Path
import ddbshard

def reader_threads():
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # a thread may end between the listing and the read
            pass
    return names.count("ddbshard-record")

def interrupted(signum, frame):
    # Within a call the reader thread is still there; between calls the handler lets it be.
    if reader_threads() == 0:
        print("between calls", flush=True)
        return
    raise KeyboardInterrupt

signal.signal(signal.SIGINT, interrupted)
text = sys.stdin.read()
print("ready", flush=True)
try:
    while True:
        ddbshard.stream_records(text)
except KeyboardInterrupt:
    print("interrupted; reader threads left:", reader_threads(), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs /proc and affinity")
def test_ctrl_c_during_a_large_event_interrupts_the_call_and_stops_the_reader() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this machine runs the tests on one CPU: no reader thread")
    # The child reads a ~30 MB event in a loop; once its reader thread shows, it gets SIGINT,
    # whose handler must run within the call (Python runs handlers only between its own
    # steps, so the call asks for them), end it with KeyboardInterrupt and stop the reader.
    text = json.dumps(event(*(_large_records() * 400)))
    with subprocess.Popen(
        [sys.executable, "-c", _READ_UNTIL_INTERRUPTED],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(text)
            child.stdin.close()
            assert child.stdout.readline() == "ready\n"
            tasks = Path(f"/proc/{child.pid}/task")
            answer = ""
            for _ in range(20):  # a signal that came just as a call ended is sent again
                seen = False
                while not seen and child.poll() is None:
                    for task in list(tasks.glob("*")):
                        with contextlib.suppress(OSError):
                            seen |= (task / "comm").read_text().strip() == "ddbshard-record"
                child.send_signal(signal.SIGINT)
                answer = child.stdout.readline()
                if answer != "between calls\n":
                    break
            assert answer == "interrupted; reader threads left: 0\n"
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:  # it loops until interrupted
                child.kill()


def test_large_events_read_from_many_threads_at_once_are_each_whole() -> None:
    texts = [_large_text(event(*_large_records(150 + i))) for i in range(4)]
    expected = [_canonical([r.as_dict() for r in ddbshard.stream_records(t)]) for t in texts]
    wrong: list[int] = []

    def read(n: int) -> None:
        for k in range(10):
            i = (n + k) % len(texts)
            if _canonical([r.as_dict() for r in ddbshard.stream_records(texts[i])]) != expected[i]:
                wrong.append(i)

    threads = [threading.Thread(target=read, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


_FORK_WHILE_READING = """
import os, sys, threading, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, on purpose
import ddbshard
text = sys.stdin.read()
expected = [r.as_dict() for r in ddbshard.stream_records(text)]
stop = threading.Event()
def loop():
    while not stop.is_set():
        assert [r.as_dict() for r in ddbshard.stream_records(text)] == expected
reading = threading.Thread(target=loop)
reading.start()
failed = 0
for _ in range(10):
    pid = os.fork()
    if pid == 0:  # the reading thread is not in the child; its calls start their own
        os._exit(0 if [r.as_dict() for r in ddbshard.stream_records(text)] == expected else 3)
    failed += os.waitpid(pid, 0)[1] != 0
stop.set()
reading.join()
print("children failed:", failed)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_while_another_thread_reads_reads_large_events() -> None:
    child = _python(_FORK_WHILE_READING, stdin=_large_text(event(*_large_records())), timeout=120)
    assert (child.returncode, child.stderr, child.stdout) == (0, "", "children failed: 0\n")


def test_a_small_rust_min_stack_does_not_overflow_the_reader_thread() -> None:
    # RUST_MIN_STACK sets the stack of a Rust program's threads; set small (16 KiB) for some
    # other program, it must not let the reader overflow its stack, which aborts the process,
    # on an event as deep as is read: images 32 levels deep, 250 levels of JSON around them.
    deep: dict[str, Any] = {"S": "x"}
    for level in range(31):
        deep = {"M": {f"d{level}": deep}}
    text = json.dumps(event(*[record(new={"pk": {"S": "a"}, "d": deep})] * 300))
    text = text[:-1] + ', "around": ' + "[" * 250 + "]" * 250 + "}"
    assert len(text) > LARGE
    expected = _canonical([r.as_dict() for r in ddbshard.stream_records(text)])
    child = _python(_READ_IN_A_LOOP, "all", "0", stdin=text, env={"RUST_MIN_STACK": str(16 * 1024)})
    assert (child.returncode, child.stderr) == (0, "")
    assert child.stdout.strip() == expected


_DECIMAL_FAILS = """
import decimal, os, sys

class Failing(decimal.Decimal):
    made = 0

    def __new__(cls, *args):
        Failing.made += 1
        if Failing.made == 30:
            raise MemoryError("no memory for this Decimal")
        return super().__new__(cls, *args)

decimal.Decimal = Failing  # before ddbshard takes the type, on its first call
import ddbshard
text = sys.stdin.read()
for _ in range(2):
    try:
        print(len(ddbshard.stream_records(text)))
    except MemoryError as e:
        print(e)
print("threads:", len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_a_failure_to_build_a_large_event_ends_the_call_and_the_reader() -> None:
    # The builder fails part way (the reader has records planned ahead, maybe waiting for
    # room): the call raises that error, the reader stops and is gone, and the next call works.
    child = _python(_DECIMAL_FAILS, stdin=_large_text(event(*_large_records())))
    assert (child.returncode, child.stderr) == (0, "")
    assert child.stdout == "no memory for this Decimal\n150\nthreads: 1\n"
