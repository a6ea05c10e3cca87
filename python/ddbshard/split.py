"""The split job on one machine: source files → native Splitter → shards, manifests, summary.

The Rust engine does the per-item work; this module streams each input file to it in
multi-MiB chunks, writes what it drains (shard bytes, reject records) to the destination,
checks every file against its manifest entry, and at the end writes each target's
manifest.json and import-table.json, `_summary.json`, and checks that the counts add up.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ddbshard._core import Splitter
from ddbshard.config import SplitConfig, auto_shards
from ddbshard.exceptions import ConfigError, DdbShardError, InputError
from ddbshard.importspec import import_table_request, split_s3_uri
from ddbshard.progress import Progress
from ddbshard.sink import Dest, ShardFile
from ddbshard.source import InputFile, Source, resolve_source

CHUNK = 4 << 20  # bytes per call into Rust: large enough to amortise the call, small for memory
PLACEHOLDER_S3 = "s3://REPLACE-WITH-BUCKET/REPLACE/WITH/PREFIX/"


@dataclass
class SplitResult:
    summary: dict[str, Any]
    exit_code: int
    dest: str
    target_dirs: list[str] = field(default_factory=list)


def _shard_key(index: int, compression: str) -> str:
    ext = {"zstd": ".json.zst", "gzip": ".json.gz", "none": ".json"}[compression]
    return f"data/part-{index:05d}{ext}"


def _owned_entries(config: SplitConfig) -> list[str]:
    return [t.name for t in config.targets] + ["_rejects", "_summary.json"]


def run_split(
    config: SplitConfig,
    *,
    s3_dest: str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> SplitResult:
    source = resolve_source(config.source)
    dest = Dest(config.dest)
    existing = dest.existing_entries()
    if existing and not overwrite:
        raise ConfigError(
            f"{config.dest}: destination is not empty ({', '.join(sorted(existing)[:5])}); "
            "pass --overwrite to replace earlier output"
        )
    if existing:
        dest.clear(_owned_entries(config))

    shards = _shard_counts(config, source)
    splitter = Splitter(config.core_spec(shards))
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    open_shards: dict[tuple[int, int], ShardFile] = {}
    progress = Progress(
        total_items=source.item_count, total_bytes=source.total_bytes, enabled=not quiet
    )
    bytes_in = bytes_out_uncompressed = 0

    def drain() -> None:
        for t, s, data in splitter.drain():
            shard = open_shards.get((t, s))
            if shard is None:
                target = config.targets[t].name
                shard = dest.open_shard(target, _shard_key(s, config.output.compression))
                open_shards[(t, s)] = shard
            shard.write(data)
        dest.append_rejects(splitter.take_rejects())

    try:
        for f in source.files:
            read, raw = _split_file(source, f, splitter, drain, progress)
            bytes_in += raw
            bytes_out_uncompressed += read
        drain()
    finally:
        for shard in open_shards.values():
            shard.handle.close()
        dest.close()
        progress.close()

    seconds = time.monotonic() - started
    counts = splitter.counts()
    stats = splitter.shard_stats()
    target_dirs = []
    s3_base = config.dest if config.dest.startswith("s3://") else (s3_dest or config.s3_dest)
    bucket, prefix = split_s3_uri(s3_base or PLACEHOLDER_S3)
    for t, target in enumerate(config.targets):
        entries = []
        for s, (items, raw_bytes) in enumerate(stats[t]):
            written = open_shards.get((t, s))
            if written is None:
                continue
            entries.append(
                {
                    "key": written.key,
                    "items": items,
                    "bytes": written.size,
                    "uncompressed_bytes": raw_bytes,
                    "md5": written.md5.hexdigest(),
                    "md5_base64": base64.b64encode(written.md5.digest()).decode(),
                }
            )
        manifest = {
            "target": target.name,
            "table_name": target.table.table_name,
            "compression": config.output.compression,
            "shard_count": len(entries),
            "items": sum(e["items"] for e in entries),
            "bytes": sum(e["bytes"] for e in entries),
            "uncompressed_bytes": sum(e["uncompressed_bytes"] for e in entries),
            "shards": entries,
        }
        dest.write_json(f"{target.name}/manifest.json", manifest)
        request = import_table_request(
            target, compression=config.output.compression, bucket=bucket, prefix=prefix
        )
        dest.write_json(f"{target.name}/import-table.json", request)
        target_dirs.append(dest.path(target.name))

    summary = _summary(
        config,
        source,
        counts,
        stats,
        seconds,
        started_at,
        bytes_in,
        bytes_out_uncompressed,
        sum(s.size for s in open_shards.values()),
    )
    dest.write_json("_summary.json", summary)
    problems = summary["items"]["rejected"] > 0 or (
        config.output.unmatched == "reject" and summary["items"]["unmatched"] > 0
    )
    return SplitResult(summary, 1 if problems else 0, config.dest, target_dirs)


def _shard_counts(config: SplitConfig, source: Source) -> dict[str, int]:
    if config.output.shards != "auto":
        return {t.name: int(config.output.shards) for t in config.targets}
    if source.item_count is None:
        # No manifest: estimate from compressed size (export lines average ~100 bytes gzipped).
        estimate = source.total_bytes // 100
        return {t.name: auto_shards(estimate) for t in config.targets}
    return {t.name: auto_shards(source.item_count) for t in config.targets}


def _split_file(
    source: Source, f: InputFile, splitter: Splitter, drain: Any, progress: Progress
) -> tuple[int, int]:
    """Streams one file through the splitter; checks its manifest MD5 and item count."""
    md5 = hashlib.md5()
    before = splitter.counts()["read"]
    splitter.begin_file(f.name)
    try:
        handle = source.fs.open(f.path, "rb")
    except OSError as e:
        raise InputError(f"{f.name}: cannot open: {e}") from e
    try:
        with handle:
            while chunk := handle.read(CHUNK):
                md5.update(chunk)
                splitter.feed(chunk)
                drain()
                progress.update(splitter.counts()["read"], len(chunk))
        splitter.end_file()
    except DdbShardError as e:
        raise type(e)(f"{f.name}: {e}") from e
    drain()
    compressed, uncompressed = splitter.file_bytes()
    if f.md5_base64 is not None:
        got = base64.b64encode(md5.digest()).decode()
        if got != f.md5_base64:
            raise InputError(
                f"{f.name}: MD5 {got} does not match the manifest's {f.md5_base64} "
                "(file changed or corrupt)"
            )
    lines = splitter.counts()["read"] - before
    if f.item_count is not None and lines != f.item_count:
        raise InputError(f"{f.name}: {lines} lines read, the manifest says {f.item_count} items")
    return uncompressed, compressed


def _summary(
    config: SplitConfig,
    source: Source,
    counts: dict[str, Any],
    stats: list[list[tuple[int, int]]],
    seconds: float,
    started_at: str,
    bytes_in: int,
    bytes_uncompressed: int,
    bytes_out: int,
) -> dict[str, Any]:
    read = counts["read"]
    written = counts["written"]
    unmatched = counts["unmatched"]
    rejected = counts["rejected"]
    targets = {}
    for t, target in enumerate(config.targets):
        tc = counts["targets"][target.name]
        shard_items = [items for items, _ in stats[t]]
        if sum(shard_items) != tc["written"]:
            raise DdbShardError(
                f"internal error: target {target.name} shards hold {sum(shard_items)} items, "
                f"{tc['written']} were written"
            )
        targets[target.name] = {
            "written": tc["written"],
            "rejected": tc["rejected"],
            "shards": sum(1 for n in shard_items if n),
            "shard_items_min": min(shard_items) if shard_items else 0,
            "shard_items_max": max(shard_items) if shard_items else 0,
        }
    if read != written + unmatched + rejected:
        raise DdbShardError(
            f"internal error: counts do not add up: read {read} != written {written} "
            f"+ unmatched {unmatched} + rejected {rejected}"
        )
    if config.output.route == "first" and written != sum(t["written"] for t in targets.values()):
        raise DdbShardError("internal error: items written differ from the targets' sum")
    return {
        "config": config.origin,
        "source": config.source,
        "dest": config.dest,
        "started_at": started_at,
        "seconds": round(seconds, 3),
        "files": {"read": len(source.files), "skipped": 0},
        "items": {
            "read": read,
            "written": written,
            "unmatched": unmatched,
            "rejected": rejected,
            "manifest": source.item_count,
        },
        "invariant": "read = written + unmatched + rejected: holds",
        "route": config.output.route,
        "unmatched_policy": config.output.unmatched,
        "targets": targets,
        "rejected_by_reason": counts["reject_records"],
        "bytes": {
            "in_compressed": bytes_in,
            "in_uncompressed": bytes_uncompressed,
            "out_compressed": bytes_out,
        },
        "items_per_second": round(read / seconds) if seconds > 0 else None,
    }
