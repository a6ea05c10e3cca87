"""What split writes about its output: shard entries, target manifests, import requests, the
run summary with its count checks, and the exit status they imply.

Used by a single run (driver.py) and by `finalize`, which joins the nodes of an array job.
"""

from __future__ import annotations

import base64
from typing import Any

from ddbshard import crashpoints
from ddbshard.aws.importspec import import_table_request
from ddbshard.config import SplitConfig
from ddbshard.exceptions import DdbShardError
from ddbshard.io.sink import Dest
from ddbshard.io.source import Source
from ddbshard.io.storage import split_s3_uri

PLACEHOLDER_S3 = "s3://REPLACE-WITH-BUCKET/REPLACE/WITH/PREFIX/"


def add_counts(total: dict[str, Any], delta: dict[str, Any]) -> None:
    """Adds one file's Splitter counts into the run's."""
    for k in ("read", "written", "unmatched", "rejected"):
        total[k] = total.get(k, 0) + delta[k]
    _add_reasons(total.setdefault("reject_records", {}), delta["reject_records"])
    targets = total.setdefault("targets", {})
    for name, tc in delta["targets"].items():
        into = targets.setdefault(name, {"written": 0, "rejected": {}})
        into["written"] += tc["written"]
        _add_reasons(into["rejected"], tc["rejected"])


def _add_reasons(total: dict[str, int], delta: dict[str, int]) -> None:
    for reason, n in delta.items():
        total[reason] = total.get(reason, 0) + n


def exit_code(config: SplitConfig, summary: dict[str, Any]) -> int:
    """1 when the job ran but not everything went in: rejects, unmatched items under
    `reject`, skipped bad files, or a stop at --max-rejects."""
    problems = (
        summary["items"]["rejected"] > 0
        or (config.output.unmatched == "reject" and summary["items"]["unmatched"] > 0)
        or bool(summary["files"]["bad"])
        or summary.get("stopped") is not None
    )
    return 1 if problems else 0


def shard_entry(key: str, items: int, size: int, raw_bytes: int, md5_hex: str) -> dict[str, Any]:
    md5 = bytes.fromhex(md5_hex)
    return {
        "key": key.split("/", 1)[1],  # relative to the target's folder
        "items": items,
        "bytes": size,
        "uncompressed_bytes": raw_bytes,
        "md5": md5.hex(),
        "md5_base64": base64.b64encode(md5).decode(),
    }


def target_manifest(
    config: SplitConfig, name: str, entries: list[dict[str, Any]]
) -> dict[str, Any]:
    target = next(t for t in config.targets if t.name == name)
    entries = sorted(entries, key=lambda e: str(e["key"]))
    return {
        "target": name,
        "table_name": target.table.table_name,
        "compression": config.output.compression,
        "shard_count": len(entries),
        "items": sum(e["items"] for e in entries),
        "bytes": sum(e["bytes"] for e in entries),
        "uncompressed_bytes": sum(e["uncompressed_bytes"] for e in entries),
        "shards": entries,
    }


def write_target_files(
    config: SplitConfig, dest: Dest, manifests: dict[str, Any], s3_dest: str | None
) -> list[str]:
    """Each target's manifest.json and import-table.json; returns the target folders."""
    s3_base = config.dest if dest.is_s3 else (s3_dest or config.s3_dest)
    bucket, prefix = split_s3_uri(s3_base or PLACEHOLDER_S3)
    folders = []
    for target in config.targets:
        dest.write_json(f"{target.name}/manifest.json", manifests[target.name])
        request = import_table_request(
            target, compression=config.output.compression, bucket=bucket, prefix=prefix
        )
        dest.write_json(f"{target.name}/import-table.json", request)
        crashpoints.reached("manifest")
        folders.append(dest.url_of(target.name))
    return folders


def run_summary(
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
