"""What a migration will cost and write, before the split runs (`estimate`).

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

import gzip
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ddbshard._core import Splitter
from ddbshard.compression import COMPRESSIONS
from ddbshard.config import SplitConfig, TargetConfig, build_core_spec
from ddbshard.exceptions import InputError
from ddbshard.io.source import InputFile, Source, resolve_source
from ddbshard.io.storage import describe_os_error
from ddbshard.limits import (
    IN_FLIGHT_IMPORT_TB,
    IN_FLIGHT_IMPORT_TB_ELSEWHERE,
    ITEMS_PER_IMPORT_OBJECT,
    MAX_IMPORT_OBJECTS,
)
from ddbshard.split.driver import shard_counts

IMPORT_MAX_OBJECTS = MAX_IMPORT_OBJECTS
# Many more items per shard than this leaves ImportTable's parallelism unused.
ITEMS_PER_OBJECT_HINT = ITEMS_PER_IMPORT_OBJECT
SAMPLE_FILES = 8
DEFAULT_SAMPLE_MB = 32
_ZSTD_MAGIC = COMPRESSIONS["zstd"].magic
_GZIP_MAGIC = COMPRESSIONS["gzip"].magic


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
    # Unmatched items are counted either way; "error" would stop the sample at the first.
    spec = build_core_spec(
        config, {n: max(1, round(k * share)) for n, k in shards.items()}, unmatched="drop"
    )
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
    in_flight_tb = IN_FLIGHT_IMPORT_TB.get(region or "", IN_FLIGHT_IMPORT_TB_ELSEWHERE)
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
