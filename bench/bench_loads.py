"""Benchmarks of the parser: `ddbshard.loads` against json + boto3's TypeDeserializer on the same
10k export lines, and the raw core (`LineReader`) in MB/s on ~50 MB of export, plain and gzip.

Each benchmark measures its baseline in the same run and reports the ratio in `extra_info`.
`compare_loads.py` beside this file prints the same numbers as a table.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

import ddbshard
from ddbshard.synth import make_items

ITEMS = 10_000
EXPORT_BYTES = 50 * 1024 * 1024
CHUNK = 8 * 1024 * 1024
"""Bytes per LineReader.feed: the multi-MiB chunks the driver crosses the boundary with."""

_DESERIALIZER = TypeDeserializer()


def export_lines(count: int = ITEMS, seed: int = 0) -> list[bytes]:
    """`{"Item":...}` lines as an export writes them: compact, raw UTF-8."""
    return [
        json.dumps({"Item": item}, ensure_ascii=False, separators=(",", ":")).encode()
        for item in make_items(count, seed)
    ]


def export_blob(lines: list[bytes], size: int = EXPORT_BYTES) -> bytes:
    """An uncompressed export data file of about `size` bytes (the lines repeated)."""
    one = b"\n".join(lines) + b"\n"
    return one * max(1, round(size / len(one)))


def decode_binaries(wire: dict[str, Any]) -> dict[str, Any]:
    ((tag, v),) = wire.items()
    if tag == "B":
        return {"B": base64.b64decode(v)}
    if tag == "BS":
        return {"BS": [base64.b64decode(m) for m in v]}
    if tag == "M":
        return {"M": {k: decode_binaries(m) for k, m in v.items()}}
    if tag == "L":
        return {"L": [decode_binaries(m) for m in v]}
    return wire


def boto3_loads(line: bytes) -> dict[str, Any]:
    """The baseline: what a Python tool does today (json, botocore's base64, TypeDeserializer)."""
    item = json.loads(line)["Item"]
    return {k: _DESERIALIZER.deserialize(decode_binaries(v)) for k, v in item.items()}


def loads_all(loads: Callable[[bytes], dict[str, Any]], lines: list[bytes]) -> int:
    for line in lines:
        loads(line)
    return len(lines)


def items_per_second(loads: Callable[[bytes], dict[str, Any]], lines: list[bytes]) -> float:
    """Best of three passes, for baselines measured beside a benchmark."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loads_all(loads, lines)
        best = min(best, time.perf_counter() - start)
    return len(lines) / best


def read_export(blob: bytes) -> ddbshard._core.LineReader:
    reader = ddbshard._core.LineReader("export")
    for at in range(0, len(blob), CHUNK):
        reader.feed(blob[at : at + CHUNK])
    reader.finish()
    return reader


def mb_per_second(blob: bytes) -> tuple[float, int]:
    """(MB/s of decompressed export, items) for one pass of the core reader."""
    start = time.perf_counter()
    reader = read_export(blob)
    seconds = time.perf_counter() - start
    return reader.bytes_out / 1e6 / seconds, reader.items


# --------------------------------------------------------------------------------------------
# pytest-benchmark


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return export_lines()


@pytest.fixture(scope="module")
def blob(lines: list[bytes]) -> bytes:
    return export_blob(lines)


@pytest.fixture(scope="module")
def blob_gz(blob: bytes) -> bytes:
    return gzip.compress(blob, compresslevel=6)


def test_boto3_loads(benchmark: Any, lines: list[bytes]) -> None:
    n = benchmark.pedantic(loads_all, args=(boto3_loads, lines), rounds=3, iterations=1)
    assert n == ITEMS
    benchmark.extra_info["items_per_s"] = round(ITEMS / benchmark.stats.stats.min)


def test_ddbshard_loads(benchmark: Any, lines: list[bytes]) -> None:
    # Same answer as the baseline, or the speed means nothing.
    sample = lines[:200]
    assert [ddbshard.loads(x) for x in sample] == [boto3_loads(x) for x in sample]
    baseline = items_per_second(boto3_loads, lines)
    n = benchmark.pedantic(loads_all, args=(ddbshard.loads, lines), rounds=5, iterations=1)
    assert n == ITEMS
    ours = ITEMS / benchmark.stats.stats.min
    benchmark.extra_info["items_per_s"] = round(ours)
    benchmark.extra_info["boto3_items_per_s"] = round(baseline)
    benchmark.extra_info["ratio_vs_boto3"] = round(ours / baseline, 2)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_core_line_reader(
    benchmark: Any, blob: bytes, blob_gz: bytes, lines: list[bytes], compressed: bool
) -> None:
    data = blob_gz if compressed else blob
    reader = benchmark.pedantic(read_export, args=(data,), rounds=3, iterations=1)
    assert reader.refused == 0
    assert reader.items == len(lines) * round(len(blob) / (len(b"\n".join(lines)) + 1))
    assert reader.bytes_out == len(blob)
    benchmark.extra_info["MB_per_s"] = round(len(blob) / 1e6 / benchmark.stats.stats.min, 1)
    benchmark.extra_info["input_MB"] = round(len(data) / 1e6, 1)
