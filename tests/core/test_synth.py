"""Tests for ddbshard.synth: synthetic items and the AWS full-export layout it writes."""

from __future__ import annotations

import base64
import decimal
import gzip
import hashlib
import json
import os
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer

from ddbshard import synth

TYPES = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}
EXPORT_FILES = {
    "data",
    "manifest-files.json",
    "manifest-files.md5",
    "manifest-summary.json",
    "manifest-summary.md5",
    "_started",
}


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return list(synth.make_items(1000, seed=11))


def walk(value: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every (type, payload) in an attribute value, nested ones included."""
    ((kind, payload),) = value.items()
    yield kind, payload
    if kind == "M":
        for inner in payload.values():
            yield from walk(inner)
    elif kind == "L":
        for inner in payload:
            yield from walk(inner)


def all_values(items: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for item in items:
        for value in item.values():
            yield from walk(value)


def to_boto(value: dict[str, Any]) -> dict[str, Any]:
    """Wire form -> what botocore hands TypeDeserializer: B and BS decoded from base64."""
    ((kind, payload),) = value.items()
    if kind == "B":
        return {"B": base64.b64decode(payload, validate=True)}
    if kind == "BS":
        return {"BS": [base64.b64decode(m, validate=True) for m in payload]}
    if kind == "M":
        return {"M": {k: to_boto(v) for k, v in payload.items()}}
    if kind == "L":
        return {"L": [to_boto(v) for v in payload]}
    return value


def line_of(item: dict[str, Any]) -> str:
    return json.dumps({"Item": item}, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# make_items


def test_deterministic_for_a_seed() -> None:
    assert list(synth.make_items(300, seed=5)) == list(synth.make_items(300, seed=5))
    assert list(synth.make_items(50, seed=5)) != list(synth.make_items(50, seed=6))


def test_ranges_are_slices_of_one_sequence() -> None:
    whole = list(synth.make_items(100, seed=3))
    for start, count in [(0, 100), (1, 7), (13, 50), (16, 8), (95, 5), (99, 1), (40, 0)]:
        assert list(synth.make_items(count, seed=3, start=start)) == whole[start : start + count]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(synth.make_items(-1))
    with pytest.raises(ValueError):
        list(synth.make_items(1, start=-1))


def test_every_type_appears(items: list[dict[str, Any]]) -> None:
    seen = Counter(kind for kind, _ in all_values(items))
    assert set(seen) == TYPES
    assert min(seen.values()) >= 10, seen


def test_boto3_deserializer_accepts_every_item(items: list[dict[str, Any]]) -> None:
    deserializer = TypeDeserializer()
    for item in items:
        for name, value in item.items():
            deserializer.deserialize(to_boto(value))  # raises on a bad number or shape
            assert name


def test_numbers_fit_dynamodb_context(items: list[dict[str, Any]]) -> None:
    numbers = [p for k, p in all_values(items) if k == "N"]
    numbers += [m for k, p in all_values(items) if k == "NS" for m in p]
    assert len(numbers) > 1000
    for text in numbers:
        DYNAMODB_CONTEXT.create_decimal(text)  # traps Inexact, Rounded, Overflow, ...
    # The forms a pass-through must keep: trailing zeros, exponents, 38 digits, negatives.
    assert any("." in t and t.endswith("0") for t in numbers)
    assert any("E+" in t for t in numbers) and any("E-" in t for t in numbers)
    assert any(t.startswith("-") for t in numbers)
    assert any(sum(c.isdigit() for c in t.lstrip("-0.")) == 38 for t in numbers)


def test_sets_are_non_empty_and_unique(items: list[dict[str, Any]]) -> None:
    for kind, payload in all_values(items):
        if kind == "SS":
            assert payload and len(set(payload)) == len(payload)
        elif kind == "NS":
            values = {decimal.Decimal(m) for m in payload}
            assert payload and len(values) == len(payload)
        elif kind == "BS":
            raw = {base64.b64decode(m) for m in payload}
            assert payload and len(raw) == len(payload)


def test_keys_and_routing_attributes(items: list[dict[str, Any]]) -> None:
    keys = set()
    for item in items:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        assert pk.startswith("USER#") and sk
        keys.add((pk, sk))
        kind = item["kind"]["S"]
        assert kind in {"post", "profile", "comment"}
        if kind == "profile":
            assert sk == "PROFILE"
        else:
            assert sk.startswith(f"{kind.upper()}#")
        assert pk == "USER#" + item["user_id"]["S"]
        assert "N" in item["score"]
    assert len(keys) == len(items), "primary keys must be unique"
    kinds = Counter(item["kind"]["S"] for item in items)
    assert kinds["profile"] == len(items) // synth.GROUP
    assert kinds["post"] > 300 and kinds["comment"] > 200
    missing = sum("created_at" not in item for item in items)
    assert 50 <= missing <= 160  # ~10%
    assert 100 <= sum("legacy" in item for item in items) <= 400
    assert sum("tags" in item for item in items) > 600


def test_awkward_values_appear(items: list[dict[str, Any]]) -> None:
    strings = [p for k, p in all_values(items) if k == "S"]
    strings += [m for k, p in all_values(items) if k == "SS" for m in p]
    text = "".join(strings)
    for needle in ["é", "😀", "데이터", '"', "\\", "\n"]:
        assert needle in text, needle
    assert "" in strings
    assert any(k == "L" and p == [] for k, p in all_values(items))
    assert any(k == "M" and p == {} for k, p in all_values(items))
    depth3 = [
        item for item in items if "M" in item.get("settings", {}).get("M", {}).get("notify", {})
    ]
    assert depth3


def test_item_sizes(items: list[dict[str, Any]]) -> None:
    sizes = [len(line_of(item).encode()) for item in items]
    assert 300 <= sum(sizes) / len(sizes) <= 600
    assert max(sizes) < 2000


def test_items_are_fresh_objects() -> None:
    a = list(synth.make_items(64, seed=2))
    for item in a:
        for value in item.values():
            for kind in ("SS", "NS", "BS", "L"):
                if kind in value:
                    value[kind].append("x")
    assert list(synth.make_items(64, seed=2)) != a
    assert all(
        "x" not in v.get(k, ())
        for item in synth.make_items(64, seed=2)
        for v in item.values()
        for k in ("SS", "NS", "BS")
    )


# ---------------------------------------------------------------------------------------------
# write_export


def read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        d = zlib.decompressobj(wbits=31)
        raw_out = d.decompress(raw) + d.flush()
        assert d.eof and d.unused_data == b"", "one gzip member per file"
        raw = raw_out
    text = raw.decode("utf-8")
    assert text == "" or text.endswith("\n")
    # Split on "\n" only: str.splitlines() also splits on U+2028, which a few strings hold raw.
    return text.split("\n")[:-1]


def check_export(root: Path, export: Path, count: int, files: int, seed: int) -> list[str]:
    """Check the layout and manifests; return all lines in manifest order."""
    assert export.parent == root / "AWSDynamoDB"
    assert {p.name for p in export.iterdir()} == EXPORT_FILES
    assert (export / "_started").read_bytes() == b""
    for name in ("manifest-files", "manifest-summary"):
        body = (export / f"{name}.json").read_bytes()
        expect = base64.b64encode(hashlib.md5(body).digest())
        assert (export / f"{name}.md5").read_bytes() == expect

    summary = json.loads((export / "manifest-summary.json").read_text())
    export_id = export.name
    assert summary["version"] == "2020-06-30"
    assert summary["exportArn"].endswith(f":table/Source/export/{export_id}")
    assert summary["tableArn"].endswith(":table/Source")
    assert summary["exportArn"].startswith(summary["tableArn"] + "/export/")
    assert summary["outputFormat"] == "DYNAMODB_JSON"
    assert summary["exportType"] == "FULL_EXPORT"
    assert summary["s3Bucket"] == "local" and summary["s3Prefix"] == ""
    assert summary["manifestFilesS3Key"] == f"AWSDynamoDB/{export_id}/manifest-files.json"
    assert summary["itemCount"] == count
    for field in ("startTime", "endTime", "exportTime", "tableId", "s3SseAlgorithm"):
        assert summary[field]

    manifest_text = (export / "manifest-files.json").read_text()
    assert manifest_text.endswith("\n")
    entries = [json.loads(line) for line in manifest_text.splitlines()]
    assert len(entries) == files
    assert sum(e["itemCount"] for e in entries) == summary["itemCount"]
    data_files = sorted(p.name for p in (export / "data").iterdir())
    assert data_files == sorted(Path(e["dataFileS3Key"]).name for e in entries)
    all_lines: list[str] = []
    billed = 0
    for entry in entries:
        assert set(entry) == {"itemCount", "md5Checksum", "etag", "dataFileS3Key"}
        key = entry["dataFileS3Key"]
        assert key.startswith(f"AWSDynamoDB/{export_id}/data/")
        path = root / key
        stem = path.name.split(".", 1)[0]
        assert len(stem) == 26 and stem.isalnum() and stem == stem.lower()
        body = path.read_bytes()
        digest = hashlib.md5(body).digest()
        assert entry["md5Checksum"] == base64.b64encode(digest).decode()
        assert entry["etag"] == digest.hex()
        lines = read_lines(path)
        assert entry["itemCount"] == len(lines)
        billed += sum(len(line.encode()) + 1 for line in lines)
        all_lines += lines
    assert summary["billedSizeBytes"] == billed
    # Contiguous ranges: the files in manifest order are the item sequence.
    expected = [line_of(item) for item in synth.make_items(count, seed=seed)]
    assert all_lines == expected
    return all_lines


def test_export_layout_and_manifests(tmp_path: Path) -> None:
    export = synth.write_export(tmp_path, 1001, files=4, seed=9)
    assert export == tmp_path / "AWSDynamoDB" / synth.default_export_id(9)
    lines = check_export(tmp_path, export, 1001, 4, 9)
    for line in lines:
        obj = json.loads(line)
        assert list(obj) == ["Item"] and isinstance(obj["Item"], dict)
    assert any(not line.isascii() for line in lines), "UTF-8 written raw (ensure_ascii=False)"
    manifest = (export / "manifest-files.json").read_text().splitlines()
    counts = [json.loads(line)["itemCount"] for line in manifest]
    assert counts == [250, 250, 250, 251]


def test_empty_export_writes_empty_files(tmp_path: Path) -> None:
    export = synth.write_export(tmp_path, 0, files=3)
    check_export(tmp_path, export, 0, 3, 0)
    for path in (export / "data").iterdir():
        assert gzip.decompress(path.read_bytes()) == b""


def test_fewer_items_than_files(tmp_path: Path) -> None:
    export = synth.write_export(tmp_path, 2, files=5, seed=4)
    check_export(tmp_path, export, 2, 5, 4)


def test_uncompressed_and_deterministic(tmp_path: Path) -> None:
    a = synth.write_export(tmp_path / "a", 300, files=2, seed=1, compress="none")
    b = synth.write_export(tmp_path / "b", 300, files=2, seed=1, compress="none", jobs=2)
    check_export(tmp_path / "a", a, 300, 2, 1)
    assert all(p.name.endswith(".json") for p in (a / "data").iterdir())
    for path in a.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    export_id = "01234567890123-abcdef12"
    a = synth.write_export(tmp_path / "a", 200, files=2, seed=8, export_id=export_id)
    b = synth.write_export(tmp_path / "b", 200, files=2, seed=8, export_id=export_id)
    assert a.name == export_id
    check_export(tmp_path / "a", a, 200, 2, 8)
    for path in a.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


def test_gzip_level(tmp_path: Path) -> None:
    fast = synth.write_export(tmp_path / "fast", 400, files=1, seed=2, gzip_level=1)
    default = synth.write_export(tmp_path / "default", 400, files=1, seed=2)
    check_export(tmp_path / "fast", fast, 400, 1, 2)
    (a,) = (fast / "data").iterdir()
    (b,) = (default / "data").iterdir()
    assert a.name == b.name and a.read_bytes() != b.read_bytes()
    assert gzip.decompress(a.read_bytes()) == gzip.decompress(b.read_bytes())
    for level in (0, 10):
        with pytest.raises(ValueError):
            synth.write_export(tmp_path / "bad", 1, gzip_level=level)


def test_zstd(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    export = synth.write_export(tmp_path, 100, files=2, compress="zstd")
    lines = []
    for entry in (export / "manifest-files.json").read_text().splitlines():
        path = tmp_path / json.loads(entry)["dataFileS3Key"]
        assert path.name.endswith(".json.zst")
        with zstandard.ZstdDecompressor().stream_reader(path.read_bytes()) as reader:
            lines += reader.read().decode().split("\n")[:-1]
    assert lines == [line_of(item) for item in synth.make_items(100)]


def test_refuses_bad_arguments_and_existing_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synth.write_export(tmp_path, -1)
    with pytest.raises(ValueError):
        synth.write_export(tmp_path, 1, files=0)
    with pytest.raises(ValueError):
        synth.write_export(tmp_path, 1, compress="bz2")
    with pytest.raises(ValueError):
        synth.write_export(tmp_path, 1, export_id="a/b")
    synth.write_export(tmp_path, 5, files=1)
    with pytest.raises(FileExistsError):
        synth.write_export(tmp_path, 5, files=1)


def test_default_export_id_shape() -> None:
    export_id = synth.default_export_id(0)
    millis, suffix = export_id.split("-")
    assert len(millis) == 14 and millis.isdigit()
    assert len(suffix) == 8 and int(suffix, 16) >= 0
    assert synth.default_export_id(1) != export_id


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path), "--items", "40", "--files", "2", "--seed", "3", "--jobs", "1"]
    assert synth.main(argv) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == tmp_path / "AWSDynamoDB" / synth.default_export_id(3)
    check_export(tmp_path, printed, 40, 2, 3)
    assert synth.main(argv) == 2  # already there: one clear line, exit status 2
    assert "already exists" in capsys.readouterr().err


def test_cli_module(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run(
        [sys.executable, "-m", "ddbshard.synth", str(tmp_path), "--items", "20", "--files", "2"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    export = Path(out.stdout.strip())
    check_export(tmp_path, export, 20, 2, 0)
