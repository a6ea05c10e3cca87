"""`estimate CONFIG`: what a migration will cost and write, before the split runs.

From the export's manifest-summary.json (itemCount, billedSizeBytes) and the config, and from a
sample of the export run through the same routing and transforms split uses (the native
Splitter), it works out per target: items, the uncompressed size ImportTable will bill, the
shard count and size, and the S3 objects against ImportTable's limit; and the export and import
charges from the per-GB rates in rates.toml or the command line.

Why a sample: ImportTable bills the uncompressed DynamoDB-JSON of the shards, which depends on
which items each target takes and on keep/drop/rename/set; billedSizeBytes is the table's item
size and says neither. Each export data file holds one partition's slice of the hashed key space
(AWS-FORMATS.md §1.2), so the opening of a few files is a fair sample of the whole table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ddbshard._core import Splitter
from ddbshard.config import SplitConfig, TargetConfig, load_config
from ddbshard.exceptions import ConfigError, InputError
from ddbshard.source import InputFile, Source, resolve_source
from ddbshard.split import shard_counts
from ddbshard.storage import describe_os_error

# ImportTable reads at most 50,000 S3 objects per import (AWS-FORMATS.md §3.3, service quotas).
IMPORT_MAX_OBJECTS = 50_000
# The sum of the (compressed) S3 objects of all imports in flight: 15 TB in these Regions, 1 TB in
# the others (AWS-FORMATS.md §3.3). Counted in decimal TB, the smaller reading, so the warning
# errs early.
IN_FLIGHT_LIMIT_TB = {"us-east-1": 15, "us-west-2": 15, "eu-west-1": 15}
# ImportTable best practice (AWS-FORMATS.md §3.4): about 4,000,000 items of under 1 KB per object,
# proportionally fewer for larger items; many more per shard leaves its parallelism unused.
ITEMS_PER_OBJECT_HINT = 4_000_000
SAMPLE_FILES = 8
DEFAULT_SAMPLE_MB = 32
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"


def add_estimate_arguments(p: argparse.ArgumentParser) -> None:
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


# --- rates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    usd_per_gb: float | None
    origin: str  # where the figure comes from, or why there is none


def rates_table() -> dict[str, Any]:
    text = (resources.files("ddbshard") / "rates.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def pick_rates(
    region: str | None, export_rate: float | None, import_rate: float | None
) -> tuple[Rate, Rate, int]:
    """(export rate, import rate, bytes per GB): the command line wins over rates.toml."""
    export, imp, _incremental, gb = region_rates(region, export_rate, import_rate)
    return export, imp, gb


def region_rates(
    region: str | None, export_rate: float | None, import_rate: float | None
) -> tuple[Rate, Rate, Rate, int]:
    """(full export, import, incremental export rates, bytes per GB) for `region`: the command
    line wins over rates.toml; a Region the table lacks gets no rate and the reason."""
    table = rates_table()
    bytes_per_gb = int(table.get("bytes_per_gb", 1 << 30))
    regions = table.get("regions", {})
    entry = regions.get(region or "", {})
    checked = entry.get("checked", table.get("checked", "?"))
    listed = ", ".join(sorted(regions)) or "none"
    missing = (
        f"no rate for {region or 'an unknown Region'} in ddbshard's rates.toml (it has "
        f"{listed}): give --export-rate/--import-rate from https://aws.amazon.com/dynamodb/pricing/"
    )

    def one(flag: float | None, key: str) -> Rate:
        if flag is not None:
            return Rate(flag, "command line")
        v = entry.get(f"{key}_per_gb")
        if isinstance(v, int | float) and not isinstance(v, bool):
            source = entry.get(f"{key}_source") or entry.get("source") or table.get("source", "?")
            return Rate(float(v), f"rates.toml, {region}, read {checked}: {source}")
        return Rate(None, missing)

    return (
        one(export_rate, "export"),
        one(import_rate, "import"),
        one(None, "incremental_export"),
        bytes_per_gb,
    )


# --- the sample ------------------------------------------------------------------------------


@dataclass
class Sample:
    read: int = 0  # items read
    unmatched: int = 0
    rejected: int = 0
    files: int = 0
    whole_files: int = 0  # files read to the end (the sample is exact for those)
    compressed_bytes: int = 0  # of the input consumed (for line files with no manifest)
    written: dict[str, int] | None = None  # per target: items written
    raw: dict[str, int] | None = None  # per target: uncompressed shard bytes
    packed: dict[str, int] | None = None  # per target: shard bytes in the configured compression


def take_sample(config: SplitConfig, source: Source, budget: int, shards: dict[str, int]) -> Sample:
    """Runs the opening `budget` bytes (uncompressed) of up to SAMPLE_FILES data files, spread
    over the export, through a Splitter built from the config.

    Each target gets its shard count scaled down by the sample's share of the export, so a
    sampled shard holds about as many items as a real one would, up to what the sample has:
    the whole export as the sample gives split's own shards, a small share of a big export
    one shard, a long stream whose compression ratio is close to that of a big real shard.
    """
    files = [f for f in source.files if f.name not in source.missing and f.item_count != 0]
    if not files or budget <= 0:
        return Sample()
    step = max(1, len(files) // SAMPLE_FILES)
    chosen = files[::step][:SAMPLE_FILES]
    per_file = max(1, budget // len(chosen))
    sample = Sample()
    parts = []
    for f in chosen:
        data, whole, consumed = _read_opening(source, f, per_file)
        sample.files += 1
        sample.whole_files += whole
        sample.compressed_bytes += consumed
        parts.append((f.name, data))
    if source.item_count:
        share = sum(data.count(b"\n") for _, data in parts) / source.item_count
    else:
        share = sample.compressed_bytes / max(1, source.total_bytes)
    share = min(1.0, share)
    spec = config.core_spec({n: max(1, round(k * share)) for n, k in shards.items()})
    spec["unmatched"] = "drop"  # counted either way; "error" would stop the sample at the first
    splitter = Splitter(spec)
    names = [t.name for t in config.targets]
    packed = dict.fromkeys(names, 0)
    for name, data in parts:
        splitter.begin_file(name)
        splitter.feed(data)
        splitter.end_file()
        for t, _shard, block in splitter.drain():
            packed[names[t]] += len(block)
        splitter.take_rejects()
    counts = splitter.counts()
    sample.read = counts["read"]
    sample.unmatched = counts["unmatched"]
    sample.rejected = counts["rejected"]
    sample.written = {n: counts["targets"][n]["written"] for n in names}
    stats = splitter.shard_stats()
    sample.raw = {n: sum(raw for _items, raw in stats[i]) for i, n in enumerate(names)}
    sample.packed = packed
    return sample


def _read_opening(source: Source, f: InputFile, budget: int) -> tuple[bytes, bool, int]:
    """(whole lines from the start of the file, up to `budget` bytes uncompressed; whether that
    is the whole file; compressed bytes consumed). Only the opening is fetched from S3."""
    try:
        with source.fs.open(f.path, "rb") as handle:
            magic = handle.read(4)
            handle.seek(0)
            if magic[:2] == _GZIP_MAGIC:
                data = gzip.GzipFile(fileobj=handle).read(budget + 1)
            elif magic == _ZSTD_MAGIC:
                import zstandard

                reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
                parts, got = [], 0
                while got <= budget and (part := reader.read(budget + 1 - got)):
                    parts.append(part)
                    got += len(part)
                data = b"".join(parts)
            else:
                data = handle.read(budget + 1)
            consumed = handle.tell()
    except (OSError, EOFError, ValueError) as e:
        raise InputError(f"{f.name}: cannot read a sample: {_describe(e)}") from e
    if len(data) <= budget:
        return data, True, consumed
    # Cut at the last whole line: the Splitter would count a cut line as a bad item.
    return data[: data.rfind(b"\n", 0, budget) + 1], False, consumed


def _describe(e: Exception) -> str:
    return describe_os_error(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"


# --- the estimate ----------------------------------------------------------------------------


def estimate(
    config: SplitConfig,
    *,
    export_rate: float | None = None,
    import_rate: float | None = None,
    region: str | None = None,
    sample_mb: int = DEFAULT_SAMPLE_MB,
) -> dict[str, Any]:
    """The estimate as plain data (what --json prints; the text report is made from it)."""
    source = resolve_source(config.source)
    summary = source.summary or {}
    items = source.item_count
    billed = summary.get("billedSizeBytes")
    region = region or _arn_region(summary.get("exportArn") or summary.get("tableArn"))
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    exp_rate, imp_rate, inc_rate, gb = region_rates(region, export_rate, import_rate)

    # The count split itself will use (output.shards, or "auto": one per million items).
    shards = shard_counts(config, source)
    sample = take_sample(config, source, sample_mb << 20, shards)
    item_basis = "manifest itemCount"
    if items is None and sample.read and sample.compressed_bytes:
        # No manifest: items per compressed byte of the sample, times the files' total size.
        items = round(sample.read * source.total_bytes / sample.compressed_bytes)
        item_basis = "estimated from file sizes (no manifest)"

    targets = {}
    for t in config.targets:
        targets[t.name] = _target_estimate(
            t, config, sample, items, billed, shards[t.name], imp_rate, gb
        )

    export_charge = _charge(billed, exp_rate, gb)
    import_charges = [v["import_charge_usd"] for v in targets.values()]
    total_import = None if None in import_charges else sum(import_charges)
    in_flight_tb = IN_FLIGHT_LIMIT_TB.get(region or "", 1)
    all_shard_bytes = [v["shard_bytes"] for v in targets.values()]
    return {
        "source": config.source,
        "region": region,
        "export": {
            "items": items,
            "items_basis": item_basis,
            "billed_size_bytes": billed,
            "data_files": len(source.files),
            "compressed_bytes": source.total_bytes,
            "export_rate_usd_per_gb": exp_rate.usd_per_gb,
            "export_rate_origin": exp_rate.origin,
            "export_charge_usd": export_charge,
        },
        "sample": {
            "items": sample.read,
            "files": sample.files,
            "whole_files": sample.whole_files,
            "unmatched_fraction": _frac(sample.unmatched, sample.read),
            "rejected_fraction": _frac(sample.rejected, sample.read),
        },
        "targets": targets,
        "import_rate_usd_per_gb": imp_rate.usd_per_gb,
        "import_rate_origin": imp_rate.origin,
        # For the catch-up: an incremental export is billed on the changes it reads, which the
        # full export's manifest cannot tell; the rate is given for the user's own sum.
        "incremental_export_rate_usd_per_gb": inc_rate.usd_per_gb,
        "incremental_export_rate_origin": inc_rate.origin,
        "import_charge_usd": total_import,
        "total_charge_usd": (
            None if export_charge is None or total_import is None else export_charge + total_import
        ),
        "in_flight_limit_bytes": in_flight_tb * 10**12,
        "shard_bytes_all_targets": (
            None if None in all_shard_bytes else sum(int(b or 0) for b in all_shard_bytes)
        ),
        "bytes_per_gb": gb,
    }


def _target_estimate(
    t: TargetConfig,
    config: SplitConfig,
    sample: Sample,
    items: int | None,
    billed: int | None,
    shards: int,
    rate: Rate,
    gb: int,
) -> dict[str, Any]:
    if sample.read and sample.written is not None and sample.raw is not None:
        written = sample.written[t.name]
        fraction = written / sample.read
        raw_per_item = sample.raw[t.name] / written if written else 0.0
        packed_per_item = (sample.packed or {})[t.name] / written if written else 0.0
        t_items = round(items * fraction) if items is not None else None
        raw = round(t_items * raw_per_item) if t_items is not None else None
        packed = round(t_items * packed_per_item) if t_items is not None else None
        basis = "sample"
    else:
        # No sample: every item, unchanged, and the table's billed size as the import size.
        # DynamoDB JSON is larger than the stored item, so this under-estimates the import.
        fraction, t_items, raw, packed = 1.0, items, billed, None
        basis = "no sample: all items, billedSizeBytes as the import size"
    objects = min(shards, t_items) if t_items is not None else shards
    per_shard_items = t_items / shards if t_items is not None else None
    item_size = (raw / t_items) if raw is not None and t_items else None
    hint = ITEMS_PER_OBJECT_HINT
    if item_size and item_size > 1024:
        hint = max(1, int(ITEMS_PER_OBJECT_HINT * 1024 / item_size))
    return {
        "table_name": t.table.table_name,
        "basis": basis,
        "fraction": fraction,
        "items": t_items,
        "import_bytes": raw,
        "import_charge_usd": _charge(raw, rate, gb),
        "compression": config.output.compression,
        "shards": shards,
        "shard_bytes": packed,
        "items_per_shard": per_shard_items,
        "bytes_per_shard": packed / shards if packed is not None else None,
        "s3_objects": objects,
        "s3_objects_limit": IMPORT_MAX_OBJECTS,
        "items_per_object_hint": hint,
    }


def _charge(nbytes: int | None, rate: Rate, gb: int) -> float | None:
    if nbytes is None or rate.usd_per_gb is None:
        return None
    return nbytes / gb * rate.usd_per_gb


def _frac(n: int, d: int) -> float | None:
    return n / d if d else None


def _arn_region(arn: Any) -> str | None:
    parts = arn.split(":") if isinstance(arn, str) else []
    return parts[3] if len(parts) > 4 and parts[3] else None


# --- the report ------------------------------------------------------------------------------


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


def run_estimate(args: argparse.Namespace) -> int:
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
