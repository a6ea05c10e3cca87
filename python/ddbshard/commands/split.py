"""`split CONFIG`: the main job, and the report it prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ddbshard.config import load_config
from ddbshard.nodes import node_from_args
from ddbshard.split import SplitOptions, SplitResult, run_split
from ddbshard.state import default_state_dir
from ddbshard.storage import check_local_output, is_s3


def print_report(result: SplitResult) -> None:
    s = result.summary
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


def run_split_command(args: Any) -> int:
    overrides: dict[str, Any] = {}
    if args.shards is not None:
        overrides["output.shards"] = args.shards
    config = load_config(args.config, overrides=overrides)
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
        s3_dest=args.s3_dest,
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
    if result.exit_code:
        print(
            "ddbshard: some items were not written: see _rejects/ in the destination",
            file=sys.stderr,
        )
    return result.exit_code


def run_finalize_command(args: Any) -> int:
    from ddbshard.finalize import run_finalize

    result = run_finalize(load_config(args.config), s3_dest=args.s3_dest)
    print(f"joined {result.summary['nodes']} nodes")
    print_report(result)
    return result.exit_code
