"""Benchmarks of the split core on one gzip data file of a synthetic export (100k items):

- parse only: `LineReader("export")` over the file (as exported, gzip; and decompressed);
- parse + route + transform: `Splitter` with compression "none", output drained and dropped;
- full split of the file: `Splitter` into zstd and into gzip shards written to files, as a
  split worker does.

Each reports items/s and MB/s of uncompressed export JSON in `extra_info`. The split is the one
in `split_setup.py` (three targets with where/drop/rename/set, 4 shards each). The file's bytes
are read into memory first, so the disk is not measured; the chunk size is the driver's.

Run: `make bench`, or `.venv/bin/python -m pytest bench/bench_split.py --benchmark-only`.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from ddbshard._core import LineReader, Splitter
from ddbshard.config import build_core_spec, load_config
from split_setup import SHARDS, TARGETS, data_files, ensure_export, write_config

ITEMS = 100_000
CHUNK = 4 << 20
"""Bytes per feed: what the split worker reads and hands to the core at a time."""


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_export(tmp_path_factory.mktemp("bench-split"), ITEMS, files=1)


@pytest.fixture(scope="module")
def data_gz(export: Path) -> bytes:
    (path,) = data_files(export)
    return path.read_bytes()


@pytest.fixture(scope="module")
def data_plain(data_gz: bytes) -> bytes:
    return gzip.decompress(data_gz)


def spec(export: Path, tmp: Path, compression: str) -> dict[str, Any]:
    path = write_config(tmp / "split.toml", export, tmp / "out", compression=compression)
    return build_core_spec(load_config(path), {name: SHARDS for name in TARGETS})


def report(benchmark: Any, items: int, raw_bytes: int) -> None:
    best = benchmark.stats.stats.min
    benchmark.extra_info["items"] = items
    benchmark.extra_info["items_per_s"] = round(items / best)
    benchmark.extra_info["MB_per_s"] = round(raw_bytes / 1e6 / best, 1)


# --------------------------------------------------------------------------------------------
# parse only


def parse(data: bytes) -> LineReader:
    reader = LineReader("export")
    for at in range(0, len(data), CHUNK):
        reader.feed(data[at : at + CHUNK])
    reader.finish()
    return reader


@pytest.mark.parametrize("form", ["gzip", "plain"])
def test_parse_only(benchmark: Any, data_gz: bytes, data_plain: bytes, form: str) -> None:
    data = data_gz if form == "gzip" else data_plain
    reader = benchmark.pedantic(parse, args=(data,), rounds=3, iterations=1)
    assert reader.items == ITEMS and reader.refused == 0
    assert reader.bytes_out == len(data_plain)
    report(benchmark, ITEMS, len(data_plain))


# --------------------------------------------------------------------------------------------
# parse + route + transform, and the full split


def split(core: dict[str, Any], data: bytes, out: dict[tuple[int, int], Any] | None) -> Splitter:
    """One file through a Splitter; drained shard bytes go to `out`'s files (None: dropped)."""
    splitter = Splitter(core)
    splitter.begin_file("data.json.gz")
    for at in range(0, len(data) + 1, CHUNK):
        if at < len(data):
            splitter.feed(data[at : at + CHUNK])
        else:
            splitter.end_file()
        for t, s, chunk in splitter.drain():
            if out is not None:
                out[(t, s)].write(chunk)
        splitter.take_rejects()
    return splitter


def check(splitter: Splitter) -> int:
    counts = splitter.counts()
    assert counts["read"] == ITEMS and counts["rejected"] == 0
    assert counts["written"] + counts["unmatched"] == ITEMS
    return int(counts["read"])


def test_parse_route_transform(
    benchmark: Any, export: Path, data_gz: bytes, data_plain: bytes, tmp_path: Path
) -> None:
    core = spec(export, tmp_path, "none")
    splitter = benchmark.pedantic(split, args=(core, data_gz, None), rounds=3, iterations=1)
    report(benchmark, check(splitter), len(data_plain))


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_full_split(
    benchmark: Any,
    export: Path,
    data_gz: bytes,
    data_plain: bytes,
    tmp_path: Path,
    compression: str,
) -> None:
    core = spec(export, tmp_path, compression)
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()

    def run() -> tuple[Splitter, int]:
        files = {
            (t, s): (shard_dir / f"{name}-{s:05d}").open("wb")
            for t, name in enumerate(TARGETS)
            for s in range(SHARDS)
        }
        try:
            splitter = split(core, data_gz, files)
        finally:
            for f in files.values():
                f.close()
        return splitter, sum(p.stat().st_size for p in shard_dir.iterdir())

    splitter, written = benchmark.pedantic(run, rounds=3, iterations=1)
    report(benchmark, check(splitter), len(data_plain))
    benchmark.extra_info["shard_MB"] = round(written / 1e6, 1)
    benchmark.extra_info["input_MB"] = round(len(data_gz) / 1e6, 1)
