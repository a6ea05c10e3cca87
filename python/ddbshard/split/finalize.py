"""`finalize CONFIG`: join the nodes of an array-job split into one output.

Each node (`split --worker-index I --worker-count N`) left `_nodes/node-IIII/summary.json`
with its counts and its targets' manifests. Finalize refuses unless all N nodes finished with
the same config and source, and their shards are disjoint; then it writes each target's
manifest.json and import-table.json and the run's `_summary.json`, checking that the counts
add up exactly as a single-machine run does.
"""

from __future__ import annotations

from typing import Any

from ddbshard.config import SplitConfig, build_core_spec
from ddbshard.exceptions import ConfigError, DdbShardError
from ddbshard.io.sink import open_dest
from ddbshard.io.source import resolve_source
from ddbshard.split.driver import SplitResult, shard_counts
from ddbshard.split.manifests import exit_code, target_manifest, write_target_files
from ddbshard.split.nodes import NODES_DIR
from ddbshard.split.state import default_state_dir, fingerprint


def run_finalize(config: SplitConfig, *, s3_dest: str | None = None) -> SplitResult:
    out = config.output
    dest = open_dest(
        config.dest,
        default_state_dir(config.dest),
        sse=out.sse,
        sse_kms_key_id=out.sse_kms_key_id,
        expected_bucket_owner=out.expected_bucket_owner,
    )
    nodes = _node_summaries(config, dest)
    source = resolve_source(config.source)
    expected = fingerprint(
        build_core_spec(config, shard_counts(config, source)),
        [(f.name, f.md5_base64, f.item_count) for f in source.files],
    )
    for s in nodes:
        if s["node"]["fingerprint"] != expected:
            raise ConfigError(
                f"{config.dest}: node {s['node']['index']} ran with another config or source "
                "than this one; rerun it with this config (--overwrite)"
            )

    manifests = {}
    for target in config.targets:
        entries = [e for s in nodes for e in s["node"]["manifests"][target.name]["shards"]]
        keys = [e["key"] for e in entries]
        if len(set(keys)) != len(keys):
            raise DdbShardError(f"internal error: nodes wrote the same shard of {target.name}")
        manifests[target.name] = target_manifest(config, target.name, entries)

    summary = _merge(config, nodes, manifests)
    target_dirs = write_target_files(config, dest, manifests, s3_dest)
    dest.write_json("_summary.json", summary)
    return SplitResult(summary, exit_code(config, summary), config.dest, target_dirs)


def _node_summaries(config: SplitConfig, dest: Any) -> list[dict[str, Any]]:
    keys = [k for k in dest.list_keys(f"{NODES_DIR}/") if k.endswith("/summary.json")]
    if not keys:
        raise ConfigError(
            f"{config.dest}: no node has finished (nothing under {NODES_DIR}/): run "
            "split --worker-index I --worker-count N on every node first"
        )
    nodes = [dest.read_json(k) for k in keys]
    counts = {s["node"]["count"] for s in nodes}
    if len(counts) != 1:
        raise ConfigError(
            f"{config.dest}: nodes ran with different --worker-count ({sorted(counts)}); "
            "clear _nodes/ and run them again"
        )
    count = counts.pop()
    done = {s["node"]["index"] for s in nodes}
    missing = sorted(set(range(count)) - done)
    if missing:
        names = ", ".join(f"{i} ({NODES_DIR}/node-{i:04d}/summary.json)" for i in missing[:5])
        raise ConfigError(
            f"{config.dest}: {len(missing)} of {count} nodes have not finished: {names}; run "
            "them (or --resume them) before finalize"
        )
    return sorted(nodes, key=lambda s: int(s["node"]["index"]))


def _merge(
    config: SplitConfig, nodes: list[dict[str, Any]], manifests: dict[str, Any]
) -> dict[str, Any]:
    items = {k: sum(s["items"][k] for s in nodes) for k in ("read", "written", "unmatched")}
    items["rejected"] = sum(s["items"]["rejected"] for s in nodes)
    if items["read"] != items["written"] + items["unmatched"] + items["rejected"]:
        raise DdbShardError(f"internal error: node counts do not add up: {items}")
    by_reason: dict[str, int] = {}
    for s in nodes:
        for reason, n in s["rejected_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    targets = {}
    for target in config.targets:
        m = manifests[target.name]
        per_node = [s["targets"][target.name] for s in nodes]
        rejected: dict[str, int] = {}
        for t in per_node:
            for reason, n in t["rejected"].items():
                rejected[reason] = rejected.get(reason, 0) + n
        written = sum(t["written"] for t in per_node)
        if written != m["items"]:
            raise DdbShardError(f"internal error: {target.name}: manifests disagree with counts")
        shard_items = [e["items"] for e in m["shards"]]
        targets[target.name] = {
            "written": written,
            "rejected": rejected,
            "shards": len(shard_items),
            "shard_items_min": min(shard_items, default=0),
            "shard_items_max": max(shard_items, default=0),
        }
    seconds = max(s["seconds"] for s in nodes)  # the nodes run side by side
    return {
        "config": config.origin,
        "source": config.source,
        "dest": config.dest,
        "started_at": min(s["started_at"] for s in nodes),
        "seconds": seconds,
        "nodes": len(nodes),
        "files": {
            "total": sum(s["files"]["total"] for s in nodes),
            "read": sum(s["files"]["read"] for s in nodes),
            "skipped": sum(s["files"]["skipped"] for s in nodes),
            "bad": [b for s in nodes for b in s["files"]["bad"]],
        },
        "items": {**items, "manifest": nodes[0]["items"]["manifest"]},
        "invariant": "read = written + unmatched + rejected: holds",
        "route": config.output.route,
        "unmatched_policy": config.output.unmatched,
        "targets": targets,
        "rejected_by_reason": by_reason,
        "bytes": {
            k: sum(s["bytes"][k] for s in nodes)
            for k in ("in_compressed", "in_uncompressed", "out_compressed")
        },
        "items_per_second": round(items["read"] / seconds) if seconds > 0 else None,
        "stopped": next((s["stopped"] for s in nodes if s.get("stopped")), None),
        "memory": {
            k: max(s["memory"][k] for s in nodes)
            for k in ("worker_peak_rss_mb", "driver_peak_rss_mb")
        },
        "runs": max(s["runs"] for s in nodes),
    }
