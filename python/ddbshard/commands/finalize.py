"""`finalize CONFIG`: after an AWS Batch array job, join the nodes' manifests, one per target."""

from __future__ import annotations

import argparse

from ddbshard.commands.split import check_s3_dest, print_report
from ddbshard.config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config")
    p.add_argument("--s3-dest", help="as for split, when dest is a local folder")


def run(args: argparse.Namespace) -> int:
    from ddbshard.split.finalize import run_finalize

    config = load_config(args.config)
    result = run_finalize(config, s3_dest=check_s3_dest(args.s3_dest, config))
    print(f"joined {result.summary['nodes']} nodes")
    print_report(result)
    return result.exit_code
