"""How `diff` grows with the table: wall time, CPU and peak RSS of the join, per export size.

For each size, on a synthetic export (the split benchmarks' generator):

  expected  `parquet` copy of the export routed through a one-target config (every item,
            keyed pk, sk): what the target should hold
  actual    the same copy with differences planted row by row: every 1000th row removed
            (missing), the next one's item_hash flipped (changed), the next one's key moved
            to a new key (unexpected: and its old key missing)
  diff      `python -m ddbshard diff CONFIG --expected T=... --actual T=...` in its own
            process, measured (wall, CPU, peak RSS from /proc VmHWM)
  DuckDB    the same comparison as one SQL statement on the same Parquet files, in its own
            process: a full outer join on the key columns, the rows whose item_hash differs
            (or that one side lacks) written to a Parquet file with their status, and counted

Both answers are checked against the planted counts, so a fast wrong answer fails the run.
It prints a table, the issue's targets (diff no slower than DuckDB, peak RSS under 8 GB, at
the largest size) and, from the two largest sizes, the peak RSS added per million items with
what that line gives for 50M items (a projection, labelled as such; left out when 50M
items were measured).

Run: `.venv/bin/python bench/compare_diff.py [--sizes 1000000,10000000]`
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import xxhash

from compare_split import _cpu_model, _loadavg, _mb, run, target
from ddbshard.compare.parquetcopy import CopyOutput, make_copies, target_keys
from ddbshard.config import load_config
from split_setup import ensure_export

HERE = Path(__file__).resolve().parent
TARGET = "All"
CONFIG = """\
source = {source}
dest = {dest}

[[target]]
name = "{target}"
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
"""
EVERY = 1000  # one planted difference of each kind per EVERY rows


def key_hash(row: dict[str, str]) -> int:
    """A copy's key_hash for a (pk, sk) key of strings, as the Rust core writes it: XXH3-64 of
    each attribute's type letter, length (u32 little-endian) and UTF-8 bytes, as an int64."""
    encoding = b"".join(
        b"S" + len(v).to_bytes(4, "little") + v for v in (row["pk"].encode(), row["sk"].encode())
    )
    h = xxhash.xxh3_64_intdigest(encoding)
    return h - (1 << 64) if h >= 1 << 63 else h


def make_actual(expected: Path, actual: Path) -> dict[str, int]:
    """A copy of `expected` with differences planted by row number; returns their counts."""
    actual.mkdir(parents=True, exist_ok=True)
    planted = {"missing": 0, "changed": 0, "unexpected": 0}
    offset = 0
    for part in sorted(expected.glob("*.parquet")):
        meta = pq.read_schema(part).metadata  # the copy's description, which diff checks
        df = pl.read_parquet(part).with_row_index("_i", offset=offset)
        offset += df.height
        phase = pl.col("_i") % EVERY
        planted["missing"] += df.filter(phase == 0).height
        planted["changed"] += df.filter(phase == 1).height
        planted["unexpected"] += df.filter(phase == 2).height
        kept = df.filter((phase != 0) & (phase != 2)).with_columns(
            pl.when(phase == 1).then(pl.col("item_hash") ^ 1).otherwise(pl.col("item_hash"))
        )
        moved = df.filter(phase == 2).with_columns(pl.col("pk") + "#moved")
        moved = moved.with_columns(
            pl.Series("key_hash", [key_hash(r) for r in moved.iter_rows(named=True)], pl.Int64)
        )
        table = pl.concat([kept, moved]).drop("_i").to_arrow()
        pq.write_table(table.replace_schema_metadata(meta), actual / part.name, compression="zstd")
    planted["missing"] += planted["unexpected"]  # a moved key leaves its old key missing
    return planted


def measure(work: Path, items: int, files: int) -> dict[str, float | int]:
    export = ensure_export(work, items, files=files, jobs=os.cpu_count() or 1)
    base = work / f"diff-{items}"
    config_path = base / "diff.toml"
    base.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        CONFIG.format(
            source=json.dumps(str(export)), dest=json.dumps(str(base / "out")), target=TARGET
        )
    )
    config = load_config(config_path)
    expected, actual = base / "expected", base / "actual"
    start = time.perf_counter()
    target = config.targets[0]
    make_copies(
        str(export),
        [CopyOutput(str(expected), target_keys(target), TARGET)],
        config=config,
        overwrite=True,
    )
    copy_s = time.perf_counter() - start
    planted = make_actual(expected, actual)
    out = base / "report"
    argv = [sys.executable, "-m", "ddbshard", "diff", str(config_path), "--quiet"]
    argv += ["--expected", f"{TARGET}={expected}", "--actual", f"{TARGET}={actual}"]
    argv += ["--out", str(out), "--work-dir", str(base / "work")]
    m = run(f"diff {items:,}", argv, items, ok=(1,))
    got = json.loads((out / "diff-summary.json").read_text())["targets"][TARGET]
    for kind, n in planted.items():
        if got[kind] != n:
            sys.exit(f"diff of {items:,} items: {kind} {got[kind]:,}, planted {n:,}")
    if got["matched"] != items - planted["missing"] - planted["changed"]:
        sys.exit(f"diff of {items:,} items: matched {got['matched']:,} is not the rest")
    argv = [sys.executable, str(HERE / "duckdb_diff.py"), str(expected), str(actual)]
    duck = run(f"DuckDB {items:,}", [*argv, str(base / "duckdb-rows.parquet")], items)
    counts = json.loads(duck.output.strip().splitlines()[-1])
    if {k: counts.get(k, 0) for k in planted} != planted:
        sys.exit(f"DuckDB on {items:,} items counted {counts}, planted {planted}")
    return {
        "items": items,
        "copy_s": copy_s,
        "wall": m.wall,
        "cpu": m.cpu,
        "rss": m.peak_rss(),
        "duck_wall": duck.wall,
        "duck_cpu": duck.cpu,
        "duck_rss": duck.peak_rss(),
        "differences": sum(planted.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="items per side, comma list")
    parser.add_argument("--files", type=int, default=8, help="data files per export")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ddbshard-bench",
        help="exports (kept and reused) and copies (default: $TMPDIR/ddbshard-bench)",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}, load average {_loadavg()}")
    rows = []
    for n in sizes:
        rows.append(measure(args.work, n, args.files))
        r = rows[-1]
        print(f"measured: diff of {n:,} items: {r['wall']:.1f} s, {_mb(int(r['rss']))} MB")
    print()
    print("| items per side | differences | parquet copy s | diff wall s | diff CPU s "
          "| diff peak RSS MB | DuckDB wall s | DuckDB CPU s | DuckDB peak RSS MB "
          "| diff wall / DuckDB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['items']:,} | {r['differences']:,} | {r['copy_s']:.1f} | {r['wall']:.1f} "
            f"| {r['cpu']:.1f} | {_mb(int(r['rss']))} | {r['duck_wall']:.1f} "
            f"| {r['duck_cpu']:.1f} | {_mb(int(r['duck_rss']))} "
            f"| {r['wall'] / r['duck_wall']:.2f}x |"
        )
    top = rows[-1]
    print()
    print("| target | measured | result |")
    print("|---|---|---|")
    n = f"{top['items']:,} items per side"
    ratio = top["wall"] / top["duck_wall"]
    target(f"diff no slower than DuckDB (wall), {n}", f"{ratio:.2f}x DuckDB's time", ratio <= 1)
    rss = int(top["rss"])
    target(f"diff peak RSS under 8 GB, {n}", f"{_mb(rss)} MB", rss < 8 << 30)
    if len(rows) > 1 and rows[-1]["items"] < 50e6:
        a, b = rows[-2], rows[-1]
        per_m = (b["rss"] - a["rss"]) / ((b["items"] - a["items"]) / 1e6)
        at_50m = b["rss"] + per_m * (50e6 - b["items"]) / 1e6
        print()
        print(
            f"peak RSS grows {per_m / (1 << 20):.0f} MB per million items between "
            f"{a['items']:,} and {b['items']:,}; projected on that line (not measured): "
            f"{at_50m / (1 << 30):.1f} GB for 50M items per side"
        )
    print(f"load average at the end: {_loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
