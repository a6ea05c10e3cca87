"""`keys` on real stream, Kinesis and incremental-export records, and on broken ones.

The records under ../shared/realdata were written by AWS's docs, SDK fixtures and captured
events; the expectations come from the records themselves (their Keys and times) or from the
expectation files shipped beside them, never from ddbshard.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zstandard

import ddbshard
from ddbshard.catchup.changes import (
    UNKNOWN,
    Change,
    RecordError,
    parse_record,
    parse_time,
    to_micros,
)
from ddbshard.catchup.keysfile import KeyCollector, KeyEntry, entry_json, read_keys, write_lines
from ddbshard.catchup.wire import canonical


def run_keys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", "keys", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def keys_out(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ids(objs: list[dict[str, Any]]) -> set[str]:
    return {canonical(o["Keys"]) for o in objs}


# --- DynamoDB Streams ----------------------------------------------------------------------

STREAM_FILES = [
    "aws-lambda-go/dynamodb-time-window-event.json",
    "aws-sam-cli/DynamoDBUpdate.json",
    "powertools-lambda-python/dynamoStreamEvent.json",
    "awsdocs-dynamodb-developer-guide/streams-lambda-tutorial-payload.json",
    "awsdocs-dynamodb-developer-guide/streams-lambda-tutorial2-record.json",
]


@pytest.mark.parametrize("name", STREAM_FILES)
def test_stream_events_give_their_keys_and_last_times(
    realdata: Path, tmp_path: Path, name: str
) -> None:
    doc = json.loads((realdata / name).read_text())
    records = doc.get("Records", [doc])
    out = tmp_path / "keys.jsonl"
    r = run_keys("--from", "streams", str(realdata / name), "--out", str(out))
    assert r.returncode == 0, r.stderr
    got = keys_out(out)
    assert ids(got) == {canonical(rec["dynamodb"]["Keys"]) for rec in records}
    for line in got:
        times = [
            rec["dynamodb"]["ApproximateCreationDateTime"]
            for rec in records
            if canonical(rec["dynamodb"]["Keys"]) == canonical(line["Keys"])
            and "ApproximateCreationDateTime" in rec["dynamodb"]
        ]
        assert line["t"] == int(Decimal(str(max(times))) * 1_000_000)  # seconds in these files


def test_a_stream_with_insert_modify_remove_keeps_the_image_before_the_window(
    realdata: Path, tmp_path: Path
) -> None:
    out = tmp_path / "k.jsonl"
    r = run_keys(
        "--from", "streams", str(realdata / "aws-sam-cli/DynamoDBUpdate.json"), "--out", str(out)
    )
    assert r.returncode == 0, r.stderr
    (line,) = keys_out(out)
    assert line["Keys"] == {"Id": {"N": "101"}}
    assert line["OldImage"] is None  # the first change is the INSERT: it did not exist before


def test_records_with_invalid_images_are_reported_and_their_key_kept(
    realdata: Path, tmp_path: Path
) -> None:
    # Records[1] of aws-lambda-go's event holds a BS with a duplicate member, which DynamoDB
    # refuses; its key is valid, and the same as Records[0]'s.
    path = realdata / "aws-lambda-go/dynamodb-event.json"
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "streams", str(path), "--out", str(out))
    assert r.returncode == 1
    assert f"{path}: Records[1]: NewImage: duplicate_set_member" in r.stderr
    assert ids(keys_out(out)) == {canonical({"val": {"S": "data"}, "key": {"S": "binary"}})}


def test_a_truncated_event_is_reported_with_its_position(realdata: Path, tmp_path: Path) -> None:
    bad = realdata / "aws-lambda-go/dynamodb-event-malformed.2.json"
    good = realdata / "aws-lambda-go/dynamodb-time-window-event.json"
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "streams", str(bad), str(good), "--out", str(out))
    assert r.returncode == 1
    assert f"{bad}: not JSON" in r.stderr and "line 135" in r.stderr
    assert ids(keys_out(out)) == {canonical({"Id": {"N": "101"}})}  # the good file still counts
    assert "1 malformed" in r.stdout


def test_malformed_lines_are_counted_and_the_rest_read(tmp_path: Path) -> None:
    body: dict[str, Any] = {"ApproximateCreationDateTime": 1700000000, "Keys": {"k": {"S": "a"}}}
    good: dict[str, Any] = {"eventName": "MODIFY", "dynamodb": body}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "eventName": "UPSERT"}),
        json.dumps({**good, "dynamodb": {"Keys": {"k": {"N": "1e999"}}}}),
        json.dumps({**good, "dynamodb": {"Keys": {"k": {"M": {}}}}}),
        json.dumps({**good, "dynamodb": {"Keys": {"k": {"S": ""}}}}),
        json.dumps({"kinesis": {"data": "e30="}}),
        "",
        json.dumps({**good, "dynamodb": {**body, "Keys": {"k": {"S": "b"}}}}),
    ]
    src = tmp_path / "records.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "streams", str(src), "--out", str(out), "--show", "100")
    assert r.returncode == 1
    for n, why in [(2, "not JSON"), (3, "UPSERT"), (4, "invalid_number"), (5, "not an S, N or B"),
                   (6, "empty"), (7, "--from kinesis")]:  # fmt: skip
        assert f"{src}: line {n}: " in r.stderr and why in r.stderr, (n, r.stderr)
    assert "6 malformed" in r.stdout
    assert ids(keys_out(out)) == {canonical({"k": {"S": "a"}}), canonical({"k": {"S": "b"}})}


# --- Kinesis Data Streams for DynamoDB -----------------------------------------------------


def test_kinesis_records_in_every_form_and_every_time_unit(realdata: Path, tmp_path: Path) -> None:
    files = [
        realdata
        / "kyopark2014-data-analytics-for-businfo/lambda-kinesis-event.json",  # base64 data
        realdata / "kyopark2014-data-analytics-for-businfo/kds-records.raw.jsonl",  # ms
        realdata
        / "kyopark2014-data-analytics-for-businfo/firehose-record-data-decoded.pretty.json",
        realdata / "startree-docs/kds-records.jsonl",  # µs and ms mixed
        realdata / "clickhouse-docs/kds-record-all-types.json",  # µs, every type
    ]
    out = tmp_path / "k.jsonl"
    # Three projects' tables: one keys file must not mix them.
    r = run_keys("--from", "kinesis", *map(str, files), "--out", str(out))
    assert r.returncode == 2 and "more than one table: dynamodb-businfo" in r.stderr
    got: dict[str, int] = {}
    tables = {raw["tableName"] for raw in _kds_records(files)}
    for table in tables:
        r = run_keys("--from", "kinesis", *map(str, files), "--table", table, "--out", str(out))
        assert r.returncode == 0, r.stderr
        got |= {canonical(x["Keys"]): x["t"] for x in keys_out(out)}
    expected: dict[str, int] = {}
    for raw in _kds_records(files):
        body = raw["dynamodb"]
        when = body["ApproximateCreationDateTime"]
        micros = when if when > 10**14 else when * 1000  # these files hold ms or µs
        k = canonical(body["Keys"])
        expected[k] = max(expected.get(k, 0), micros)
    assert got == expected
    assert len(got) == 7  # the Lambda event's record is also the first raw line


def _kds_records(files: list[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in files:
        text = f.read_text()
        if f.suffix == ".jsonl":
            out += [json.loads(line) for line in text.splitlines() if line.strip()]
            continue
        doc = json.loads(text)
        for rec in doc.get("Records", [doc]):
            if "kinesis" in rec:
                rec = json.loads(base64.b64decode(rec["kinesis"]["data"]))
            out.append(rec)
    return out


def test_kinesis_fixtures_that_are_not_dynamodb_json(realdata: Path, tmp_path: Path) -> None:
    # crate/commons-codec's records hold {"N": 1} and NS of JSON numbers in their images, and
    # two deliberately invalid records (eventSource foo:bar, eventName FOOBAR).
    out = tmp_path / "k.jsonl"
    src = realdata / "crate-commons-codec/kinesis-cdc-records.jsonl"
    # Its records name two tables (foo, and table-testdrive-nested on line 2).
    r = run_keys("--from", "kinesis", str(src), "--out", str(out), "--show", "20")
    assert r.returncode == 2 and "foo (" in r.stderr and "table-testdrive-nested (" in r.stderr
    assert not out.exists()
    r = run_keys("--from", "kinesis", str(src), "--table", "foo", "--out", str(out), "--show", "20")
    assert r.returncode == 1
    assert "line 6: eventSource 'foo:bar'" in r.stderr and "line 7: eventName 'FOOBAR'" in r.stderr
    assert r.stderr.count("(image left out, key kept)") == 4
    assert "read 7 records: 2 malformed, 4 with an invalid image" in r.stdout
    assert "; 1 of other tables than foo" in r.stdout
    (line,) = keys_out(out)
    assert line["Keys"] == {"id": {"S": "5F9E-Fsadd41C-4C92-A8C1-70BF3FFB9266"}}
    assert line["t"] == 1720742321848352  # the newest of foo's four valid records, in µs
    assert line["OldImage"] is None  # the oldest record is the INSERT
    r = run_keys("--from", "kinesis", str(src), "--table", "table-testdrive-nested", "--out",
                 str(out))  # fmt: skip
    (line,) = keys_out(out)
    assert line["t"] == 1720800199717446  # its one record


def test_lambda_stream_events_of_two_tables_need_table(realdata: Path, tmp_path: Path) -> None:
    """Lambda's stream events name their table in eventSourceARN only."""
    other = realdata / "aws-sam-cli/DynamoDBUpdate.json"  # table/{{{table}}}
    one = realdata / "awsdocs-dynamodb-developer-guide/streams-lambda-tutorial-payload.json"
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "streams", str(other), str(one), "--out", str(out))
    assert r.returncode == 2 and "{{{table}}} (" in r.stderr and "and BarkTable (" in r.stderr
    r = run_keys("--from", "streams", str(other), str(one), "--table", "BarkTable", "--out",
                 str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "; 3 of other tables than BarkTable" in r.stdout
    alone = tmp_path / "alone.jsonl"
    assert run_keys("--from", "streams", str(one), "--out", str(alone)).returncode == 0
    assert out.read_bytes() == alone.read_bytes()
    r = run_keys("--from", "incremental", str(one), "--table", "T", "--out", str(out))
    assert r.returncode == 2 and "--table: an incremental export" in r.stderr


# --- incremental exports -------------------------------------------------------------------


def test_incremental_lines_match_the_awslabs_expectations(realdata: Path) -> None:
    folder = realdata / "awslabs-amazon-dynamodb-tools"
    lines = (folder / "incremental-export.jsonl").read_text().splitlines()
    expected = [
        json.loads(x)
        for x in (folder / "incremental-export.expected.jsonl").read_text().splitlines()
    ]
    assert len(lines) == len(expected)
    for text, want in zip(lines, expected, strict=True):
        change = parse_record("incremental", json.loads(text), f"line {want['line']}")
        assert ("PUT" if isinstance(change.new, dict) else "DELETE") == want["operation"]
        assert change.t == 1234567890  # WriteTimestampMicros is µs whatever its size
        if "keys" in want:
            assert ddbshard.loads(json.dumps(change.keys)) == want["keys"]
        elif "data" in want:
            names = ["id"] if "id" in want["data"] else ["pk", "sk"]
            assert ddbshard.loads(json.dumps(change.keys)) == {n: want["data"][n] for n in names}
        if isinstance(change.new, dict):
            assert ddbshard.loads(json.dumps(change.new)) == want["data"]


def test_invalid_incremental_lines_are_refused(realdata: Path, tmp_path: Path) -> None:
    folder = realdata / "awslabs-amazon-dynamodb-tools"
    expected = (folder / "incremental-export.invalid.expected.jsonl").read_text().splitlines()
    out = tmp_path / "k.jsonl"
    r = run_keys(
        "--from", "incremental", str(folder / "incremental-export.invalid.jsonl"), "--out", str(out)
    )
    assert r.returncode == 1
    assert f"{len(expected)} malformed" in r.stdout
    for n in range(1, len(expected) + 1):
        assert f"line {n}: " in r.stderr
    assert keys_out(out) == []


def _export(root: Path, lines: list[str], compress: str) -> Path:
    """An incremental export in AWS's layout: shared data folder, manifests under the id."""
    base = root / "AWSDynamoDB" / "01700000000000-abcd1234"
    base.mkdir(parents=True)
    (root / "AWSDynamoDB" / "data").mkdir()
    raw = "".join(x + "\n" for x in lines).encode()
    data = gzip.compress(raw) if compress == "gzip" else zstandard.ZstdCompressor().compress(raw)
    (root / "AWSDynamoDB/data/f1.json.gz").write_bytes(data)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    entry = {
        "itemCount": len(lines),
        "md5Checksum": md5,
        "dataFileS3Key": "p/AWSDynamoDB/data/f1.json.gz",
    }
    (base / "manifest-files.json").write_text(json.dumps(entry) + "\n")
    summary = {
        "exportType": "INCREMENTAL_EXPORT",
        "outputView": "NEW_AND_OLD_IMAGES",
        "outputFormat": "DYNAMODB_JSON",
    }
    (base / "manifest-summary.json").write_text(json.dumps(summary))
    return base


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_incremental_export_root_is_read_through_its_manifest(
    realdata: Path, tmp_path: Path, compress: str
) -> None:
    lines = (
        (realdata / "awslabs-amazon-dynamodb-tools/incremental-export.jsonl")
        .read_text()
        .splitlines()
    )
    root = _export(tmp_path, lines, compress)
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "incremental", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    got = keys_out(out)
    assert ids(got) == {
        canonical({"id": {"N": "123"}}),
        canonical({"pk": {"S": "USER"}, "sk": {"S": "123"}}),
    }
    # NEW_AND_OLD_IMAGES: the pk/sk record has no OldImage, so the item did not exist before.
    assert next(x for x in got if "pk" in x["Keys"])["OldImage"] is None


def test_a_data_file_that_does_not_match_its_manifest_stops_the_run(
    realdata: Path, tmp_path: Path
) -> None:
    lines = (
        (realdata / "awslabs-amazon-dynamodb-tools/incremental-export.jsonl")
        .read_text()
        .splitlines()
    )
    root = _export(tmp_path, lines, "gzip")
    (tmp_path / "AWSDynamoDB/data/f1.json.gz").write_bytes(
        gzip.compress(b"\n".join(x.encode() for x in lines[:3]))
    )
    r = run_keys("--from", "incremental", str(root), "--out", str(tmp_path / "k.jsonl"))
    assert r.returncode == 2
    assert "f1.json.gz" in r.stderr and "does not match the manifest" in r.stderr


def test_a_full_export_is_not_an_incremental_one(tmp_path: Path) -> None:
    from ddbshard import synth

    root = synth.write_export(tmp_path, 10, files=1)
    r = run_keys("--from", "incremental", str(root), "--out", str(tmp_path / "k.jsonl"))
    assert r.returncode == 2 and "full export" in r.stderr


# --- time window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "until", "kept"),
    [
        ("1719081613486", None, {"MODIFY", "REMOVE"}),  # ms, inclusive
        ("1719081613486001", None, {"MODIFY"}),  # µs, just after REMOVE
        ("1719000000", "2024-06-22T18:40:13.486Z", {"INSERT"}),  # s; ISO until is exclusive
        (None, "2024-06-22T18:40:13.487+00:00", {"INSERT", "REMOVE"}),
    ],
)
def test_the_window_takes_seconds_milliseconds_microseconds_and_iso(
    realdata: Path, tmp_path: Path, since: str | None, until: str | None, kept: set[str]
) -> None:
    src = realdata / "startree-docs/kds-records.jsonl"
    records = [json.loads(x) for x in src.read_text().splitlines()]
    args = [*(["--since", since] if since else []), *(["--until", until] if until else [])]
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "kinesis", str(src), "--out", str(out), *args)
    assert r.returncode == 0, r.stderr
    want = {canonical(x["dynamodb"]["Keys"]) for x in records if x["eventName"] in kept}
    assert ids(keys_out(out)) == want


def test_time_units() -> None:
    assert to_micros(1479499740) == 1479499740_000000
    assert to_micros(Decimal("1693997155.0")) == 1693997155_000000
    assert to_micros(Decimal("1693997155.25")) == 1693997155_250000
    assert to_micros(1649931248740) == 1649931248_740000
    assert to_micros(1719039879869591) == 1719039879869591
    assert to_micros("1719039879869591") == 1719039879869591
    assert parse_time("2024-06-22T07:04:39.869591Z") == 1719039879869591
    assert parse_time("2024-06-22T09:04:39.869591+02:00") == 1719039879869591
    for bad in ("yesterday", "-5", "1e9"):
        with pytest.raises(RecordError):
            parse_time(bad)
    assert parse_time("0") == 0
    # Times no stream holds: once they reached the trimming checks' messages (a year 0 there
    # was a traceback) or Kinesis' AT_TIMESTAMP (botocore's own traceback).
    for far in ("0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "99999999999999999999999"):
        with pytest.raises(RecordError, match="outside"):
            parse_time(far)
    with pytest.raises(RecordError):
        to_micros(True)


# --- the keys file -------------------------------------------------------------------------


def _change(key: str, t: int | None, old: Any, new: Any = UNKNOWN, seq: int = -1) -> Change:
    keys = {"pk": {"S": key}}
    return Change("x", keys, canonical(keys), t, seq, old, new)


def test_newest_change_gives_the_time_oldest_gives_the_old_image() -> None:
    c = KeyCollector()
    # Out of order, as Kinesis may deliver: the oldest is the one at t=100.
    c.add(_change("a", 300, {"v": {"N": "2"}}, {"v": {"N": "3"}}))
    c.add(_change("a", 100, {"v": {"N": "0"}}, {"v": {"N": "1"}}))
    c.add(_change("b", 200, None))
    c.add(_change("a", 200, {"v": {"N": "1"}}, {"v": {"N": "2"}}))
    c.add(_change("a", 300, {"v": {"N": "2"}}, {"v": {"N": "3"}}))  # a duplicate delivery
    a, b = sorted(c.entries(), key=lambda e: e.keys["pk"]["S"])
    assert (a.t, a.old, a.new) == (300, {"v": {"N": "0"}}, {"v": {"N": "3"}})
    assert (b.t, b.old) == (200, None)
    # Same second: the stream sequence number decides.
    c = KeyCollector()
    c.add(_change("a", 100, {"v": {"N": "1"}}, seq=12))
    c.add(_change("a", 100, {"v": {"N": "0"}}, seq=11))
    assert c.entries()[0].old == {"v": {"N": "0"}}


def test_keys_file_round_trip(tmp_path: Path) -> None:
    entries = [
        KeyEntry({"pk": {"S": "é😀\u2028"}, "n": {"N": "1.50"}}, "", 17, {"pk": {"S": "x"}}),
        KeyEntry({"pk": {"B": "AAE="}}, "", None, None),
        KeyEntry({"pk": {"S": "b"}}, ""),
        KeyEntry({"cid": {"S": "C#1"}}, "", target="Comments"),
    ]
    path = tmp_path / "keys.jsonl"
    write_lines(str(path), (entry_json(e) for e in entries))
    back = list(read_keys(str(path)))
    assert [(b.keys, b.t, b.old, b.target) for b in back] == [  # type: ignore[union-attr]
        (e.keys, e.t, e.old, e.target) for e in entries
    ]
    assert json.loads(path.read_text().splitlines()[2]) == {"Keys": {"pk": {"S": "b"}}}


def test_bad_keys_lines_are_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    path.write_text(
        '{"Keys":{"pk":{"S":"a"}}}\n{"Keys":{"pk":{"N":"x"}}}\n[1]\n{"Keys":{"pk":{"S":"b"}},"t":"soon"}\n'
    )
    got = list(read_keys(str(path)))
    assert isinstance(got[0], KeyEntry)
    assert [g.where for g in got[1:]] == [f"{path}: line {n}" for n in (2, 3, 4)]


# --- issue 18: times out of range, members named twice -------------------------------------


def test_times_outside_1973_to_5138_are_malformed_records(tmp_path: Path) -> None:
    def record(key: str, when: str) -> str:
        return (
            f'{{"eventName":"INSERT","dynamodb":{{"ApproximateCreationDateTime":{when},'
            f'"Keys":{{"k":{{"S":"{key}"}}}}}}}}'
        )

    # 1E+400000000 is a valid JSON number a naive int() would take minutes to expand.
    bad = ["5", "99999999", "1e30", "99999999999999999999", "1E+400000000", '"1969-12-31"']
    ok = [("s", "100000000"), ("ms", "1700000000123"), ("us", "99999999999999999")]
    lines = [record(f"bad{n}", when) for n, when in enumerate(bad)]
    lines += [record(key, when) for key, when in ok]
    incremental = (
        '{"Metadata":{"WriteTimestampMicros":"100000000000000000"},"Keys":{"k":{"S":"x"}}}'
    )
    src = tmp_path / "records.jsonl"
    src.write_text("\n".join(lines) + "\n")
    inc = tmp_path / "incremental.jsonl"
    inc.write_text(incremental + "\n")
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "streams", str(src), "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in range(1, len(bad) + 1):
        assert f"{src}: line {n}: ApproximateCreationDateTime " in r.stderr, (n, r.stderr)
    assert r.stderr.count("outside the years 1973-5138") == len(bad)
    assert f"{len(bad)} malformed" in r.stdout
    assert ids(keys_out(out)) == {canonical({"k": {"S": key}}) for key, _ in ok}
    assert sorted(x["t"] for x in keys_out(out)) == [
        100000000_000000,
        1700000000123_000,
        99999999999999999,
    ]
    r = run_keys("--from", "incremental", str(inc), "--out", str(out))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{inc}: line 1: Metadata.WriteTimestampMicros 100000000000000000 is after" in r.stderr


def test_a_member_named_twice_makes_its_record_malformed(tmp_path: Path) -> None:
    def good(keys: str) -> str:
        body = f'{{"ApproximateCreationDateTime":1700000000,{keys}}}'
        return f'{{"eventName":"MODIFY","dynamodb":{body}}}'

    a, b, c = (f'{{"k":{{"S":"{x}"}}}}' for x in "abc")
    twice_keys = good(f'"Keys":{a},"Keys":{b}')
    twice_deep = good('"Keys":{"k":{"S":"c","S":"d"}}')
    lines = tmp_path / "records.jsonl"
    lines.write_text("\n".join([twice_keys, good(f'"Keys":{c}'), twice_deep]) + "\n")
    out = tmp_path / "k.jsonl"
    r = run_keys("--from", "streams", str(lines), "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert f"{lines}: line 1: the member 'Keys' appears twice in one JSON object" in r.stderr
    assert f"{lines}: line 3: the member 'S' appears twice in one JSON object" in r.stderr
    assert "2 malformed" in r.stdout
    assert ids(keys_out(out)) == {canonical({"k": {"S": "c"}})}
    # A whole-file event: only the record holding the duplicate is malformed, not the file.
    records = ",\n".join([good(f'"Keys":{a}'), twice_deep, good(f'"Keys":{b}')])
    event = tmp_path / "event.json"
    event.write_text('{\n"Records": [\n' + records + "\n]\n}\n")
    r = run_keys("--from", "streams", str(event), "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert f"{event}: Records[1]: the member 'S' appears twice" in r.stderr
    assert ids(keys_out(out)) == {canonical({"k": {"S": "a"}}), canonical({"k": {"S": "b"}})}
    # Incremental export lines (what sync --from incremental reads) and Kinesis data too.
    inc = tmp_path / "incremental.jsonl"
    meta = '{"Metadata":{"WriteTimestampMicros":"1700000000000000"},'
    inc.write_text(f'{meta}"Keys":{a},"NewImage":{a},"NewImage":{b}}}\n{meta}"Keys":{c}}}\n')
    r = run_keys("--from", "incremental", str(inc), "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert f"{inc}: line 1: the member 'NewImage' appears twice" in r.stderr
    assert ids(keys_out(out)) == {canonical({"k": {"S": "c"}})}
    wrapped = base64.b64encode(twice_keys.encode()).decode()
    kinesis = tmp_path / "kinesis.jsonl"
    kinesis.write_text(json.dumps({"kinesis": {"data": wrapped}}) + "\n")
    r = run_keys("--from", "kinesis", str(kinesis), "--out", str(out))
    assert r.returncode == 1 and "the member 'Keys' appears twice" in r.stderr, r.stderr


def test_a_keys_line_naming_a_member_twice_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    path.write_text(
        '{"Keys":{"pk":{"S":"a"}},"Keys":{"pk":{"S":"b"}}}\n'
        '{"Keys":{"pk":{"S":"c"}},"OldImage":{"pk":{"S":"c"},"v":{"N":"1"},"v":{"N":"2"}}}\n'
        '{"Keys":{"pk":{"S":"d"}}}\n'
    )
    got = list(read_keys(str(path)))
    assert [(g.where, g.reason) for g in got[:2]] == [  # type: ignore[union-attr]
        (f"{path}: line 1", "the member 'Keys' appears twice in one JSON object"),
        (f"{path}: line 2", "the member 'v' appears twice in one JSON object"),
    ]
    assert isinstance(got[2], KeyEntry) and got[2].keys == {"pk": {"S": "d"}}
