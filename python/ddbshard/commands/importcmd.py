"""`import CONFIG`: create each target's table with ImportTable, follow it, then finish the
table (the jobs themselves: aws/importjob.py)."""

from __future__ import annotations

import argparse
import sys
import uuid

from ddbshard.aws.importjob import (
    aws_failure,
    check_objects,
    check_table_absent,
    dynamodb_client,
    finish,
    follow,
    load_plans,
    print_dry_run,
    print_started,
    start_imports,
)
from ddbshard.config import load_config
from ddbshard.io.storage import s3_client


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the migration's TOML config (split has run)")
    p.add_argument(
        "--target", action="append", dest="targets", metavar="T", help="only T (repeatable)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the imports to the end, check item counts, then apply stream, TTL, tags "
        "and PITR",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the requests and aws CLI commands only"
    )
    p.add_argument(
        "--new-token",
        action="store_true",
        help="a fresh ClientToken, to start again within 8 hours of a failed import",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    salt = uuid.uuid4().hex if args.new_token else ""
    plans = load_plans(config, args.targets, salt=salt)
    if args.dry_run:
        print_dry_run(plans)
        return 0

    from botocore.exceptions import BotoCoreError

    try:
        ddb = dynamodb_client()
        s3 = s3_client()
    except BotoCoreError as e:
        raise aws_failure("AWS client", e) from e
    local = not config.dest.startswith("s3://")
    for plan in plans:
        check_table_absent(ddb, plan)
        data = f"{config.dest.rstrip('/')}/{plan.target}/data/" if local else None
        check_objects(s3, plan, data)

    started = start_imports(ddb, plans, log=_stderr)
    if not args.wait:
        print_started(started)
        return 0
    try:
        follow(ddb, started, log=_stderr)
    except KeyboardInterrupt:
        _stderr("ddbshard: interrupted; the imports go on in AWS:")
        print_started(started)
        return 130
    code = finish(ddb, started, log=_stderr)
    if code:
        _stderr("ddbshard: not every import ended as expected: see above")
    return code
