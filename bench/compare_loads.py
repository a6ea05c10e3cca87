"""Prints ddbshard.loads against json + boto3 TypeDeserializer (items/s and the ratio) and the
core LineReader's MB/s on ~50 MB of export, plain and gzip, all measured in this one process.

Run: `.venv/bin/python bench/compare_loads.py [--items N]`
"""

from __future__ import annotations

import argparse
import gzip
import platform

import ddbshard
from bench_loads import (
    ITEMS,
    boto3_loads,
    export_blob,
    export_lines,
    items_per_second,
    mb_per_second,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=ITEMS, help="lines to parse (default 10k)")
    args = parser.parse_args()

    lines = export_lines(args.items)
    size = sum(map(len, lines))
    assert [ddbshard.loads(x) for x in lines[:200]] == [boto3_loads(x) for x in lines[:200]]
    ours = items_per_second(ddbshard.loads, lines)
    theirs = items_per_second(boto3_loads, lines)

    blob = export_blob(lines)
    blob_gz = gzip.compress(blob, compresslevel=6)
    plain = max(mb_per_second(blob)[0] for _ in range(3))
    gz = max(mb_per_second(blob_gz)[0] for _ in range(3))

    print(f"{len(lines):,} export lines, {size / 1e6:.1f} MB, Python {platform.python_version()}")
    print()
    per_item = size / len(lines) / 1e6
    print(f"{'':34}{'items/s':>12}{'MB/s':>10}")
    print(f"{'json + boto3 TypeDeserializer':34}{theirs:>12,.0f}{theirs * per_item:>10.1f}")
    print(f"{'ddbshard.loads':34}{ours:>12,.0f}{ours * per_item:>10.1f}")
    print(f"{'ratio (ddbshard / boto3)':34}{ours / theirs:>12.1f}x")
    print()
    print(f"core LineReader('export'), {len(blob) / 1e6:.0f} MB decompressed:")
    print(f"{'  uncompressed':34}{'':>12}{plain:>10.1f}")
    print(f"{'  gzip (' + format(len(blob_gz) / 1e6, '.1f') + ' MB in)':34}{'':>12}{gz:>10.1f}")


if __name__ == "__main__":
    main()
