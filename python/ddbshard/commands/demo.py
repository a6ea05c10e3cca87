"""`demo [OUT]`: split the export shipped in the package with the shipped config."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ddbshard.commands.split import print_report
from ddbshard.config import load_config
from ddbshard.io.storage import check_local_output
from ddbshard.split.driver import SplitOptions, run_split


def demo_config_path() -> Path:
    return Path(str(resources.files("ddbshard") / "demo_data" / "split.toml"))


def run_demo(out: str) -> int:
    config_path = demo_config_path()
    config = load_config(config_path, overrides={"dest": str(Path(out).resolve())})
    print(f"demo: splitting {config.source}\n      with {config_path}")
    result = run_split(config, SplitOptions(overwrite=True, quiet=True))
    print_report(result)
    print(
        "look at: _summary.json (counts), Posts/ and Profiles/ (data/ shards, manifest.json, "
        "import-table.json); decode a shard with `zstd -dc Posts/data/part-00000.json.zst`"
    )
    return result.exit_code


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", nargs="?", default="ddbshard-demo", help="output folder")


def run(args: argparse.Namespace) -> int:
    check_local_output(args.out, "OUT")
    return run_demo(args.out)
