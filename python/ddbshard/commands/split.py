"""`split CONFIG`: the main job, and the report it prints."""

from __future__ import annotations

import json
import sys
from typing import Any

from ddbshard.config import load_config
from ddbshard.split import SplitResult, run_split


def print_report(result: SplitResult) -> None:
    s = result.summary
    items = s["items"]
    print(
        f"read {items['read']:,} items in {s['seconds']:.1f} s "
        f"({s['items_per_second'] or 0:,} items/s): written {items['written']:,}, "
        f"unmatched {items['unmatched']:,}, rejected {items['rejected']:,}"
    )
    for name, t in s["targets"].items():
        print(
            f"  {name}: {t['written']:,} items in {t['shards']} shards "
            f"({t['shard_items_min']:,}..{t['shard_items_max']:,} per shard)"
        )
    if s["rejected_by_reason"]:
        print(f"  rejects by reason: {json.dumps(s['rejected_by_reason'])}")
    print(f"output: {result.dest} (_summary.json, <target>/manifest.json, import-table.json)")


def run_split_command(args: Any) -> int:
    overrides: dict[str, Any] = {}
    if args.shards is not None:
        overrides["output.shards"] = args.shards
    config = load_config(args.config, overrides=overrides)
    result = run_split(config, s3_dest=args.s3_dest, overwrite=args.overwrite, quiet=args.quiet)
    print_report(result)
    if result.exit_code:
        print(
            "ddbshard: some items were not written: see _rejects/ in the destination",
            file=sys.stderr,
        )
    return result.exit_code
