"""`split CONFIG`: the main job, and the report it prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ddbshard.commands import positive_int
from ddbshard.config import SplitConfig, load_config
from ddbshard.exceptions import ConfigError
from ddbshard.io.storage import check_local_output, is_s3, split_s3_uri
from ddbshard.split.driver import REJECTS_KEY, SplitOptions, SplitResult, run_split
from ddbshard.split.nodes import Node, node_from_args
from ddbshard.split.state import default_state_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config")
    p.add_argument(
        "--s3-dest",
        help="s3://bucket/prefix/ the shards will be uploaded to, for import-table.json "
        "(when dest is a local folder)",
    )
    p.add_argument("--shards", help="override [output] shards (a number or 'auto')")
    p.add_argument("--overwrite", action="store_true", help="replace earlier output in dest")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint (same config)",
    )
    p.add_argument("--workers", type=positive_int, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--on-bad-file",
        choices=["stop", "skip"],
        default="stop",
        help="a corrupt, truncated, missing or mismatched input file stops the run (default) "
        "or is skipped and reported",
    )
    p.add_argument(
        "--max-rejects",
        type=positive_int,
        help="stop (exit 1) once this many items have been rejected",
    )
    p.add_argument(
        "--state-dir",
        help="where the checkpoint lives (default: <dest>/_state, or ~/.cache/ddbshard/ "
        "for an s3:// dest)",
    )
    p.add_argument(
        "--worker-index",
        type=int,
        help="this node's index in an AWS Batch array job (default: AWS_BATCH_JOB_ARRAY_INDEX)",
    )
    p.add_argument(
        "--worker-count",
        type=positive_int,
        help="nodes in the array job (default: AWS_BATCH_JOB_ARRAY_SIZE); finalize joins them",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")


def print_report(result: SplitResult) -> None:
    s = result.summary
    if result.already_finished:
        print("nothing to resume: this job already finished; its report:")
    items = s["items"]
    print(
        f"read {items['read']:,} items in {s['seconds']:.1f} s "
        f"({s['items_per_second'] or 0:,} items/s): written {items['written']:,}, "
        f"unmatched {items['unmatched']:,}, rejected {items['rejected']:,}"
    )
    if "node" in s:
        print(
            f"  node {s['node']['index']} of {s['node']['count']}: when every node is done, "
            "run finalize"
        )
    for name, t in s["targets"].items():
        print(
            f"  {name}: {t['written']:,} items in {t['shards']} shards "
            f"({t['shard_items_min']:,}..{t['shard_items_max']:,} per shard)"
        )
    files = s["files"]
    if files["skipped"]:
        print(f"  resumed: {files['skipped']} input files were finished before and not read again")
    for bad in files["bad"]:
        print(f"  bad input file skipped: {bad['file']}: {bad['reason']}")
    if s["stopped"]:
        print(f"  stopped: {s['stopped']}")
    if s["rejected_by_reason"]:
        print(f"  rejects by reason: {json.dumps(s['rejected_by_reason'])}")
    if "node" in s:
        print(f"output: {result.dest} (shards, and _nodes/node-{s['node']['index']:04d}/)")
    else:
        print(f"output: {result.dest} (_summary.json, <target>/manifest.json, import-table.json)")


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.shards is not None:
        overrides["output.shards"] = args.shards
    config = load_config(args.config, overrides=overrides)
    s3_dest = check_s3_dest(args.s3_dest, config)
    state_dir = Path(args.state_dir) if args.state_dir else None
    # Checked before any data is read: a destination that cannot be written would otherwise
    # fail at the first append, after the first input files were read for nothing.
    if not is_s3(config.dest):
        check_local_output(config.dest, "dest")
    check_local_output(
        str(state_dir or default_state_dir(config.dest)),
        "--state-dir" if state_dir else "the checkpoint folder (--state-dir to move it)",
    )
    options = SplitOptions(
        s3_dest=s3_dest,
        overwrite=args.overwrite,
        resume=args.resume,
        quiet=args.quiet,
        workers=args.workers,
        on_bad_file=args.on_bad_file,
        max_rejects=args.max_rejects,
        state_dir=state_dir,
        node=node_from_args(args.worker_index, args.worker_count),
    )
    result = run_split(config, options)
    print_report(result)
    for line in closing_lines(result, options.node):
        print(f"ddbshard: {line}", file=sys.stderr)
    return result.exit_code


def check_s3_dest(s3_dest: str | None, config: SplitConfig) -> str | None:
    """--s3-dest as import-table.json will name it, refused before any work when it is not
    s3://bucket[/prefix] (the ImportTable request needs a bucket) or contradicts an s3:// dest
    (the shards are then where dest says; a config's s3_dest is checked the same way)."""
    if s3_dest is None:
        return None
    try:
        bucket, prefix = split_s3_uri(s3_dest)
    except ValueError as e:
        raise ConfigError(f"--s3-dest: {e}") from None
    if is_s3(config.dest) and split_s3_uri(config.dest) != (bucket, prefix):
        raise ConfigError(
            f"--s3-dest {s3_dest}: only for a local dest (where the shards will be uploaded); "
            f"dest is already on S3 ({config.dest})"
        )
    return f"s3://{bucket}/{prefix}"


def closing_lines(result: SplitResult, node: Node | None = None) -> list[str]:
    """Where to look for what was not written, one line per kind of problem that exit status 1
    stands for; none for a clean run. A skipped bad file is in the summary, not in _rejects/
    (which a run with no rejected item does not even create)."""
    if not result.exit_code:
        return []
    s = result.summary
    items = s["items"]
    rejects = REJECTS_KEY if node is None else f"_rejects/rejects-node-{node.index:04d}.jsonl"
    summary = "_summary.json" if node is None else f"{node.dir}/summary.json"
    lines = []
    not_written = items["rejected"]
    if s.get("unmatched_policy") == "reject":
        not_written += items["unmatched"]
    if not_written:
        lines.append(f"{not_written:,} items were not written: see {rejects} in the destination")
    bad = s["files"]["bad"]
    if bad:
        lines.append(
            f"{len(bad)} bad input file{'s were' if len(bad) != 1 else ' was'} skipped "
            f"(--on-bad-file skip): see files.bad in {summary} in the destination"
        )
    if s.get("stopped"):
        lines.append(f"the run stopped early: {s['stopped']}")
    return lines or [f"the run did not write everything: see {summary} in the destination"]
