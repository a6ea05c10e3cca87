"""Benchmarks of `parquet`: DynamoDB-JSON lines to a Parquet copy, on a synthetic export
(100k items in 4 gzip data files), each against parsing the same bytes, measured in this run:

- baseline: `LineReader("export")` over every file (decompress, split lines, parse, validate);
- columns: `ColumnBuilder` over every file, batches taken and dropped (adds the canonical form,
  its hash and the key columns);
- copy: `make_copies`, the whole command (Arrow batches, zstd Parquet files on local disk),
  with one worker thread and with every CPU;
- routed copy: the same through the split config's routing, target Posts (`--config/--target`),
  without and with the source key kept beside each row (what `diff` makes: `x_without_source_key`
  is the ratio of the second's time to the first's).

Each reports items/s, MB/s of uncompressed export JSON, and the ratio of its time to the
baseline's in `extra_info`.

Run: `make bench`, or `.venv/bin/python -m pytest bench/bench_parquet.py --benchmark-only`.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ddbshard._core import ColumnBuilder, LineReader
from ddbshard.compare.parquetcopy import CopyOutput, make_copies, target_keys
from ddbshard.config import load_config
from split_setup import data_files, ensure_export, write_config

ITEMS = 100_000
FILES = 4
CHUNK = 8 << 20  # what parquetcopy feeds at a time
KEYS = (("pk", "S"), ("sk", "S"))
_BASELINE: dict[str, float] = {}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_export(tmp_path_factory.mktemp("bench-parquet"), ITEMS, files=FILES)


@pytest.fixture(scope="module")
def files(export: Path) -> list[bytes]:
    return [p.read_bytes() for p in data_files(export)]


@pytest.fixture(scope="module")
def raw_bytes(files: list[bytes]) -> int:
    return sum(len(gzip.decompress(f)) for f in files)


def report(benchmark: Any, items: int, raw: int) -> None:
    best = benchmark.stats.stats.min
    benchmark.extra_info["items_per_s"] = round(items / best)
    benchmark.extra_info["MB_per_s"] = round(raw / 1e6 / best, 1)
    if "parse" in _BASELINE:
        benchmark.extra_info["x_parse_time"] = round(best / _BASELINE["parse"], 2)


def test_baseline_parse_only(benchmark: Any, files: list[bytes], raw_bytes: int) -> None:
    def run() -> int:
        items = 0
        for data in files:
            reader = LineReader("export")
            for at in range(0, len(data), CHUNK):
                reader.feed(data[at : at + CHUNK])
            reader.finish()
            items += reader.items
        return items

    assert benchmark.pedantic(run, rounds=3, iterations=1) == ITEMS
    _BASELINE["parse"] = benchmark.stats.stats.min
    report(benchmark, ITEMS, raw_bytes)


def test_columns_only(benchmark: Any, files: list[bytes], raw_bytes: int) -> None:
    def run() -> int:
        builder = ColumnBuilder(list(KEYS))
        rows = 0
        for n, data in enumerate(files):
            builder.begin_file(f"f{n}")
            for at in range(0, len(data), CHUNK):
                builder.feed(data[at : at + CHUNK])
                rows += builder.take_batch()["rows"]
            builder.end_file()
        return rows + int(builder.take_batch()["rows"])

    assert benchmark.pedantic(run, rounds=3, iterations=1) == ITEMS
    report(benchmark, ITEMS, raw_bytes)


@pytest.mark.parametrize("workers", [1, os.cpu_count() or 1])
def test_copy(benchmark: Any, export: Path, raw_bytes: int, tmp_path: Path, workers: int) -> None:
    dest = tmp_path / "copy"

    def run() -> int:
        shutil.rmtree(dest, ignore_errors=True)
        out = CopyOutput(str(dest), KEYS)
        make_copies(str(export), [out], workers=workers)
        return out.rows

    assert benchmark.pedantic(run, rounds=3, iterations=1) == ITEMS
    report(benchmark, ITEMS, raw_bytes)
    benchmark.extra_info["workers"] = workers
    benchmark.extra_info["parquet_MB"] = round(
        sum(p.stat().st_size for p in dest.glob("*.parquet")) / 1e6, 1
    )


@pytest.mark.parametrize("source_key", [None, ("pk", "sk")], ids=["plain", "source_key"])
def test_routed_copy(
    benchmark: Any,
    export: Path,
    raw_bytes: int,
    tmp_path: Path,
    source_key: tuple[str, ...] | None,
) -> None:
    config = load_config(write_config(tmp_path / "split.toml", export, tmp_path / "out"))
    posts = next(t for t in config.targets if t.name == "Posts")
    dest = tmp_path / "posts"

    def run() -> int:
        shutil.rmtree(dest, ignore_errors=True)
        out = CopyOutput(str(dest), target_keys(posts), "Posts")
        result = make_copies(str(export), [out], config=config, workers=1, source_key=source_key)
        assert result.read == ITEMS
        return out.rows

    rows = benchmark.pedantic(run, rounds=3, iterations=1)
    assert 0 < rows < ITEMS
    report(benchmark, ITEMS, raw_bytes)
    benchmark.extra_info["rows"] = rows
    if source_key is None:
        _BASELINE["routed"] = benchmark.stats.stats.min
    elif "routed" in _BASELINE:
        ratio = benchmark.stats.stats.min / _BASELINE["routed"]
        benchmark.extra_info["x_without_source_key"] = round(ratio, 3)
