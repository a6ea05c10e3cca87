"""`estimate CONFIG`: what a migration will cost and write, before the split runs (the
estimate itself: split/estimate.py)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ddbshard.config import load_config
from ddbshard.exceptions import ConfigError
from ddbshard.split.estimate import (
    DEFAULT_SAMPLE_MB,
    estimate,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config")
    p.add_argument(
        "--export-rate",
        type=_rate,
        metavar="USD_PER_GB",
        help="export charge per GB (default: the Region's in rates.toml)",
    )
    p.add_argument(
        "--import-rate",
        type=_rate,
        metavar="USD_PER_GB",
        help="import charge per GB of uncompressed source (default: rates.toml)",
    )
    p.add_argument(
        "--region", help="Region whose rates apply (default: the export's, from its manifest)"
    )
    p.add_argument(
        "--sample-mb",
        type=int,
        default=DEFAULT_SAMPLE_MB,
        metavar="MB",
        help=f"uncompressed MB of the export to run through the routing (default "
        f"{DEFAULT_SAMPLE_MB}; 0: no sample, assume every item goes to every target as is)",
    )
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a number >= 0")
    return v


# --- the report --------------------------------------------------------------------------------


def _size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _usd(v: float | None) -> str:
    if v is None:
        return "?"
    if v == 0 or v >= 0.01:
        return f"${v:,.2f}"
    return f"${v:.4f}" if v >= 0.0001 else "<$0.0001"


def _per_gb(v: float) -> str:
    return f"${v:.2f}" if round(v, 2) == v else f"${v:g}"


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:,.0f}"


def print_report(e: dict[str, Any]) -> None:
    x = e["export"]
    gb = e["bytes_per_gb"]
    print(f"export {e['source']} ({e['region'] or 'Region unknown'})")
    print(
        f"  {_num(x['items'])} items ({x['items_basis']}), {_size(x['billed_size_bytes'])} billed, "
        f"{x['data_files']} data files, {_size(x['compressed_bytes'])} compressed"
    )
    if x["export_charge_usd"] is not None and x["billed_size_bytes"] is not None:
        print(
            f"  export charge: {x['billed_size_bytes'] / gb:,.3f} GB x "
            f"{_per_gb(x['export_rate_usd_per_gb'])}/GB = {_usd(x['export_charge_usd'])}"
        )
    s = e["sample"]
    if s["items"]:
        whole = "whole files" if s["whole_files"] == s["files"] else "the opening of each file"
        print(f"  sample: {s['items']:,} items from {s['files']} files ({whole})")
    for name, t in e["targets"].items():
        print(f"target {name} -> table {t['table_name']}")
        share = f" ({100 * t['fraction']:.1f}% of the source)" if t["fraction"] != 1.0 else ""
        print(f"  items: {_num(t['items'])}{share}")
        if t["basis"] != "sample":
            print(f"  ({t['basis']})")
        print(
            f"  import: {_size(t['import_bytes'])} uncompressed (what ImportTable bills), "
            f"{_usd(t['import_charge_usd'])}"
        )
        print(
            f"  shards: {t['shards']:,} {t['compression']}, about {_num(t['items_per_shard'])} "
            f"items and {_size(t['bytes_per_shard'])} each; "
            f"{t['s3_objects']:,} S3 objects of ImportTable's {t['s3_objects_limit']:,}"
        )
        if t["s3_objects"] > t["s3_objects_limit"]:
            print("  PROBLEM: more objects than one import reads; lower [output] shards")
        per = t["items_per_shard"]
        if per is not None and per > 2 * t["items_per_object_hint"]:
            print(
                f"  hint: about {t['items_per_object_hint']:,} items per object imports faster "
                "(AWS best practice); raise [output] shards"
            )
    if s["unmatched_fraction"]:
        print(f"unmatched: {100 * s['unmatched_fraction']:.1f}% of the sample matches no target")
    if s["rejected_fraction"]:
        print(f"rejected: {100 * s['rejected_fraction']:.2f}% of the sample would be rejected")
    total_shards = e["shard_bytes_all_targets"]
    if total_shards is not None and total_shards > e["in_flight_limit_bytes"]:
        print(
            f"PROBLEM: {_size(total_shards)} of shards is more than the "
            f"{e['in_flight_limit_bytes'] // 10**12} TB of imports allowed in flight in this "
            "Region: import the targets one after another"
        )
    print(
        f"total: export {_usd(x['export_charge_usd'])} + import {_usd(e['import_charge_usd'])}"
        f" = {_usd(e['total_charge_usd'])} (list prices, before S3 requests and storage)"
    )
    incremental = e["incremental_export_rate_usd_per_gb"]
    if incremental is not None:
        print(
            f"catch-up: an incremental export costs {_per_gb(incremental)}/GB of the changes it "
            "reads (not counted above)"
        )
    origins = {x["export_rate_origin"], e["import_rate_origin"]}
    if incremental is not None:
        origins.add(e["incremental_export_rate_origin"])
    for origin in sorted(origins):
        print(f"rates: {origin}")


def run(args: argparse.Namespace) -> int:
    if args.sample_mb < 0:
        raise ConfigError("--sample-mb must be 0 or more")
    config = load_config(args.config)
    result = estimate(
        config,
        export_rate=args.export_rate,
        import_rate=args.import_rate,
        region=args.region,
        sample_mb=args.sample_mb,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0
