"""`ddbshard.loads` against boto3 on real DynamoDB JSON that nobody in this project wrote.

Every export line, every stream image (Lambda events, Kinesis records, incremental-export lines)
and every vector of `../shared/realdata` either loads to exactly what boto3's TypeDeserializer
gives, or, where DynamoDB would refuse it (`oracle.dynamodb_refuses`), raises `ParseError` with
the same reason. Images are fed as the exact bytes of the file, pretty-printing included.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ddbshard
from support.oracle import (
    REALDATA,
    deserialize,
    deserialize_item,
    eval_python_repr,
    exact,
    item_refuses,
    load_json,
    read_line,
)

IMAGE_KEYS = frozenset({"Keys", "NewImage", "OldImage"})


def assert_loads_like_oracle(raw: bytes) -> dict[str, Any] | None:
    """loads(raw) equals boto3's reading, or raises ParseError for the oracle's reason."""
    wire, reason = read_line(raw)
    if reason is not None:
        with pytest.raises(ddbshard.ParseError) as info:
            ddbshard.loads(raw)
        assert info.value.reason == reason, str(info.value)
        return None
    assert wire is not None
    got = ddbshard.loads(raw)
    assert exact(got) == exact(deserialize_item(wire))
    # What dumps writes must read back the same, as a bare map and as an export line.
    assert exact(ddbshard.loads(ddbshard.dumps(got))) == exact(got)
    assert exact(ddbshard.loads(ddbshard.dumps(got, line=True))) == exact(got)
    return got


def _skip_param(name: str) -> Any:
    return pytest.param(
        None,
        id=f"no-{name}",
        marks=pytest.mark.skip(
            reason=f"real data not found at {REALDATA} (expected beside the repository)"
        ),
    )


# --------------------------------------------------------------------------------------------
# Export lines


def _export_cases() -> list[Any]:
    if not REALDATA.is_dir():
        return [_skip_param("export-lines")]
    cases = []
    for path in sorted(REALDATA.rglob("*.export.jsonl")):
        rel = path.relative_to(REALDATA).as_posix()
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip():
                cases.append(pytest.param(line, id=f"{rel}:L{n}"))
    return cases


EXPORT_CASES = _export_cases()


@pytest.mark.parametrize("line", EXPORT_CASES)
def test_export_line_loads_like_boto3(line: bytes) -> None:
    doc = load_json(line)
    assert list(doc) == ["Item"], "an export line holds one Item"
    got = assert_loads_like_oracle(line)
    assert (got is None) == (item_refuses(doc["Item"]) is not None)


def test_export_lines_were_found(realdata: Path) -> None:
    # SOURCES.md: 18 + 55 + 500 + 1 export items.
    assert len(EXPORT_CASES) == 574


def test_lenient_full_load_record_is_refused(realdata: Path) -> None:
    # crate/commons-codec's RECORD_IN writes numbers as JSON numbers ({"N": 1}, NS [1, 0.34]),
    # which boto3 turns into Decimals and DynamoDB's JSON does not allow.
    line = (realdata / "crate-commons-codec" / "full-load-RECORD_IN.export.jsonl").read_bytes()
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.loads(line.strip())
    assert info.value.reason == "wrong_value_type"
    assert info.value.line == 0
    assert line[info.value.offset : info.value.offset + 1] == b"1"


# --------------------------------------------------------------------------------------------
# Stream images


@dataclass(frozen=True)
class Image:
    """One Keys/NewImage/OldImage object, as the bytes it occupies in its file."""

    raw: bytes
    truncated: bool  # the file ends before the object closes


def _image_spans(text: str) -> list[tuple[str, int, int | None]]:
    """(key, start, end) of each top-most Keys/NewImage/OldImage object value in JSON text.

    A small scanner rather than json: it must work on truncated files and give the exact
    source span. `end` is None when the text ends inside the object.
    """
    spans: list[tuple[str, int, int | None]] = []
    depth = 0
    image: tuple[str, int, int] | None = None  # key, start, depth inside the object
    i, n = 0, len(text)
    last_string = ""
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            last_string = text[i + 1 : j]
            i = j + 1
            continue
        if c == ":":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if image is None and last_string in IMAGE_KEYS and j < n and text[j] == "{":
                image = (last_string, j, depth + 1)
        elif c in "{[":
            depth += 1
        elif c in "}]":
            if image is not None and depth == image[2]:
                spans.append((image[0], image[1], i + 1))
                image = None
            depth -= 1
        i += 1
    if image is not None:
        spans.append((image[0], image[1], None))
    return spans


def _images_in(text: str, where: str) -> list[tuple[str, Image]]:
    out = []
    for key, start, end in _image_spans(text):
        line = text.count("\n", 0, start) + 1
        raw = text[start:end].encode()
        out.append((f"{where}:L{line}:{key}", Image(raw, truncated=end is None)))
    return out


def _kinesis_payloads(doc: Any) -> list[str]:
    """Decoded `kinesis.data` of a Lambda Kinesis event: the KDS record bytes AWS sent."""
    if isinstance(doc, dict):
        found = []
        kinesis = doc.get("kinesis")
        if isinstance(kinesis, dict) and isinstance(kinesis.get("data"), str):
            found.append(base64.b64decode(kinesis["data"]).decode())
        for v in doc.values():
            found.extend(_kinesis_payloads(v))
        return found
    if isinstance(doc, list):
        return [p for v in doc for p in _kinesis_payloads(v)]
    return []


def _stream_files() -> list[Path]:
    files = []
    for path in sorted(REALDATA.rglob("*.json*")):
        name = path.name
        if name.endswith(".export.jsonl") or ".expected." in name or path.parent.name == "vectors":
            continue
        files.append(path)
    return files


def _stream_cases() -> list[Any]:
    if not REALDATA.is_dir():
        return [_skip_param("stream-images")]
    cases = []
    for path in _stream_files():
        rel = path.relative_to(REALDATA).as_posix()
        text = path.read_text(encoding="utf-8")
        found = _images_in(text, rel)
        docs: list[Any] = []
        try:
            docs = [json.loads(text)]
        except ValueError:
            if path.suffix == ".jsonl":
                for line in text.splitlines():
                    with contextlib.suppress(ValueError):  # a line the source keeps broken
                        docs.append(json.loads(line))
        for k, payload in enumerate(p for doc in docs for p in _kinesis_payloads(doc)):
            found.extend(_images_in(payload, f"{rel}:kinesis.data[{k}]"))
        cases.extend(pytest.param(image, id=case_id) for case_id, image in found)
    return cases


STREAM_CASES = _stream_cases()
STREAM_IDS = {p.id for p in STREAM_CASES}


@pytest.mark.parametrize("image", STREAM_CASES)
def test_stream_image_loads_like_boto3_or_is_refused(image: Image) -> None:
    if image.truncated:
        # JSON cannot say what is wrong first; any refusal will do, a crash will not.
        with pytest.raises(ddbshard.ParseError) as info:
            ddbshard.loads(image.raw)
        assert info.value.reason in ddbshard._core.REASONS
        return
    assert_loads_like_oracle(image.raw)


def test_stream_images_were_found(realdata: Path) -> None:
    # SOURCES.md counts 2+5+3+2+7+1+3 records, plus the Kinesis event and the truncated
    # file; each record has Keys and at least one image (REMOVE: OldImage only).
    per_folder: dict[str, int] = {}
    for case_id in STREAM_IDS:
        folder = case_id.split("/", 1)[0]
        per_folder[folder] = per_folder.get(folder, 0) + 1
    assert per_folder["clickhouse-docs"] == 2
    # INSERT: Keys, NewImage; MODIFY: Keys, NewImage, OldImage; REMOVE: Keys, OldImage; in the
    # jsonl and the pretty copy.
    assert per_folder["startree-docs"] == 2 * (2 + 3 + 2)
    assert per_folder["kyopark2014-data-analytics-for-businfo"] >= 3 * 2
    assert len(STREAM_IDS) > 60


# Images the sources call out as bad in an attribute value, with the rule DynamoDB applies.
KNOWN_BAD = {
    # aws-lambda-go's event fixture: "BinarySet": {"BS": ["AAEqQQ==", "AAEqQQ=="]}.
    "aws-lambda-go/dynamodb-event.json:L62:NewImage": "duplicate_set_member",
    # crate/commons-codec: JSON numbers and {"S": null} in test fixtures.
    "crate-commons-codec/kinesis-cdc-records.jsonl:L1:NewImage": "wrong_value_type",
    "crate-commons-codec/kinesis-cdc-records.jsonl:L2:NewImage": "wrong_value_type",
    "crate-commons-codec/kinesis-cdc-records.jsonl:L3:NewImage": "wrong_value_type",
    "crate-commons-codec/kinesis-cdc-records.jsonl:L4:NewImage": "wrong_value_type",
    "crate-commons-codec/kinesis-cdc-records.jsonl:L4:OldImage": "wrong_value_type",
    "crate-commons-codec/kinesis-cdc-records.jsonl:L5:OldImage": "wrong_value_type",
}


@pytest.mark.parametrize(("case_id", "reason"), sorted(KNOWN_BAD.items()))
def test_known_bad_images_are_refused(realdata: Path, case_id: str, reason: str) -> None:
    (image,) = [p.values[0] for p in STREAM_CASES if p.id == case_id]
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.loads(image.raw)
    assert info.value.reason == reason


def test_truncated_lambda_event_is_refused(realdata: Path) -> None:
    # aws-lambda-go's dynamodb-event-malformed.2.json stops inside the second NewImage, after
    # two BS that hold "AAEqQQ==" twice: the first problem in reading order is the one reported.
    truncated = [
        p.values[0]
        for p in STREAM_CASES
        if p.id.startswith("aws-lambda-go/dynamodb-event-malformed.2.json")
        and p.values[0].truncated
    ]
    assert len(truncated) == 1
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.loads(truncated[0].raw)
    assert info.value.reason == "duplicate_set_member"
    raw_image = truncated[0].raw
    at_set = raw_image[info.value.offset :]  # the offset points at the set's '['
    assert at_set.startswith(b"[") and at_set.split(b"]")[0].count(b'"AAEqQQ=="') == 2
    # Without the duplicates, the reader gets to the end and finds the JSON cut short.
    fixed = raw_image.replace(b'"AAEqQQ==",\n', b"")
    assert fixed.count(b'"AAEqQQ=="') == 4  # asdf1, asdf2, Binary, BinarySet
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.loads(fixed)
    assert info.value.reason == "invalid_json"
    assert info.value.offset == len(fixed)
    # The whole file, too.
    raw = (realdata / "aws-lambda-go" / "dynamodb-event-malformed.2.json").read_bytes()
    with pytest.raises(ddbshard.ParseError):
        ddbshard.loads(raw)


def test_incremental_export_matches_its_authors_expectations(realdata: Path) -> None:
    # awslabs' parser test asserts the deserialized data of each line: NewImage for a PUT,
    # Keys for a DELETE (numbers compare by value: the test writes them as Python ints).
    folder = realdata / "awslabs-amazon-dynamodb-tools"
    lines = (folder / "incremental-export.jsonl").read_bytes().splitlines()
    expected_text = (folder / "incremental-export.expected.jsonl").read_text(encoding="utf-8")
    expected = [json.loads(e) for e in expected_text.splitlines()]
    checked = 0
    for want in expected:
        if "data" not in want:
            continue
        record = json.loads(lines[want["line"] - 1])
        image = record["NewImage"] if want["operation"] == "PUT" else record["Keys"]
        got = ddbshard.loads(json.dumps(image).encode())
        assert got == want["data"]
        checked += 1
    assert checked == 5


def _record_lines() -> list[Any]:
    """Whole lines of the JSON-lines stream files: records and metadata, never bare items."""
    if not REALDATA.is_dir():
        return [_skip_param("stream-records")]
    cases = []
    for path in _stream_files():
        if path.suffix != ".jsonl":
            continue
        rel = path.relative_to(REALDATA).as_posix()
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            cases.append(pytest.param(line, id=f"{rel}:L{n}"))
    return cases


@pytest.mark.parametrize("line", _record_lines())
def test_whole_stream_record_is_not_an_item(line: bytes) -> None:
    # A record (eventName, tableName, ...) or an incremental-export line (Keys, Metadata), and
    # the invalid ones the sources keep (malformed JSON, a JSON array, unknown event source):
    # none of them is an attribute map, so each is refused, never crashed on.
    with pytest.raises(ddbshard.ParseError) as info:
        ddbshard.loads(line)
    assert info.value.reason in ddbshard._core.REASONS
    assert read_line(line)[1] is not None


# --------------------------------------------------------------------------------------------
# Attribute-value vectors


def _vector_cases() -> list[Any]:
    path = REALDATA / "vectors" / "attribute_values.jsonl"
    if not path.is_file():
        return [_skip_param("vectors")]
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = load_json(line)
        short = json.dumps(row["wire"], ensure_ascii=False, separators=(",", ":"))[:40]
        cases.append(pytest.param(row, id=f"L{n}:{short}"))
    return cases


VECTOR_CASES = _vector_cases()


@pytest.mark.parametrize("row", VECTOR_CASES)
def test_vector(row: dict[str, Any]) -> None:
    wire = row["wire"]
    line = json.dumps({"a": wire}, ensure_ascii=False).encode()
    reason = item_refuses({"a": wire})
    boto3_says = row["python"]
    if boto3_says.startswith("error"):
        assert reason is not None, "DynamoDB refuses at least what boto3 refuses"
    if reason is not None:
        if not boto3_says.startswith("error"):
            assert "note" in row, "the vector explains why DynamoDB is stricter than boto3"
        with pytest.raises(ddbshard.ParseError) as info:
            ddbshard.loads(line)
        assert info.value.reason == reason
        return
    got = ddbshard.loads(line)
    assert list(got) == ["a"]
    assert exact(got["a"]) == exact(deserialize(wire))
    assert exact(got["a"]) == exact(eval_python_repr(boto3_says))
    assert exact(ddbshard.loads(ddbshard.dumps(got))) == exact(got)


def test_vectors_were_found(realdata: Path) -> None:
    assert len(VECTOR_CASES) == 75
