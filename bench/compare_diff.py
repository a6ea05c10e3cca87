"""How `diff` grows with the table: wall time, CPU and peak RSS of the join, per export size.

For each size, on a synthetic export (the split benchmarks' generator):

  expected  `parquet` copy of the export routed through a one-target config (every item,
            keyed pk, sk): what the target should hold
  actual    the same copy with differences planted row by row: every 1000th row removed
            (missing), the next one's item_hash flipped (changed), the next one's key moved
            to a new key (unexpected: and its old key missing)
  diff      `python -m ddbshard diff CONFIG --expected T=... --actual T=...` in its own
            process, measured (wall, CPU, peak RSS from /proc VmHWM); its counts are checked
            against the planted ones, so a fast wrong answer fails the benchmark

It prints a table and, from the two largest sizes, the peak RSS added per million items and
what that line gives for 50M items (a projection from the measured sizes, labelled as such).

Run: `.venv/bin/python bench/compare_diff.py [--sizes 1000000,4000000]`
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from compare_split import _cpu_model, _loadavg, _mb, run
from ddbshard.config import load_config
from ddbshard.parquetcopy import CopyOutput, make_copies, target_keys
from split_setup import ensure_export

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


def make_actual(expected: Path, actual: Path) -> dict[str, int]:
    """A copy of `expected` with differences planted by row number; returns their counts."""
    actual.mkdir(parents=True, exist_ok=True)
    planted = {"missing": 0, "changed": 0, "unexpected": 0}
    offset = 0
    for part in sorted(expected.glob("*.parquet")):
        table = pq.read_table(part)
        n = table.num_rows
        phase = pa.array([(offset + i) % EVERY for i in range(n)], pa.int32())
        offset += n
        gone, flip, move = (pc.equal(phase, k) for k in (0, 1, 2))
        flipped = pc.if_else(flip, pc.bit_wise_xor(table["item_hash"], 1), table["item_hash"])
        moved = pc.if_else(
            move, pc.binary_join_element_wise(table["pk"], "#moved", ""), table["pk"]
        )
        table = table.set_column(table.schema.get_field_index("item_hash"), "item_hash", flipped)
        table = table.set_column(table.schema.get_field_index("pk"), "pk", moved)
        table = table.filter(pc.invert(gone))
        planted["missing"] += pc.sum(gone).as_py() or 0
        planted["changed"] += pc.sum(flip).as_py() or 0
        planted["unexpected"] += pc.sum(move).as_py() or 0
        pq.write_table(table, actual / part.name, compression="zstd")
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
    return {
        "items": items,
        "copy_s": copy_s,
        "wall": m.wall,
        "cpu": m.cpu,
        "rss": m.peak_rss(),
        "differences": sum(planted.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,4000000", help="items per side, comma list")
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
    print("| items per side | differences | copy (parquet) s | diff wall s | diff CPU s "
          "| items/s (diff) | peak RSS MB |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['items']:,} | {r['differences']:,} | {r['copy_s']:.1f} | {r['wall']:.1f} "
            f"| {r['cpu']:.1f} | {r['items'] / r['wall']:,.0f} | {_mb(int(r['rss']))} |"
        )
    if len(rows) > 1:
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
