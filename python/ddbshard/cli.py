"""Command line: parse arguments, hand the work to the command's module, map errors to exits.

Exit status (DESIGN.md): 0 success; 1 the job ran but found problems (rejected items,
differences); 2 bad usage, bad config or unreadable input. Errors are one line; a traceback
only with --debug. That holds for the errors of the environment too, whichever command meets
them: missing AWS credentials, Region or profile (storage.aws_setup_problem), and a local file
or folder that cannot be written (OSError, the last resort behind the commands' own checks).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ddbshard.exceptions import DdbShardError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


# Commands whose arguments are defined next to their code, and whose code imports polars,
# pyarrow or boto3 (half a second or more): their modules are imported only for the command
# being run, so that `split` and its worker start-up do not pay for `diff`.
_ARGUMENTS_WITH_CODE = {
    "init": (
        "ddbshard.commands.init",
        "add_init_arguments",
        "write a config whose target recreates a table; export it",
    ),
    "estimate": (
        "ddbshard.commands.estimate",
        "add_estimate_arguments",
        "what the migration will cost and write, from the export",
    ),
    "keys": (
        "ddbshard.commands.keys",
        "add_keys_arguments",
        "list the keys changed in a time window",
    ),
    "sync": (
        "ddbshard.commands.sync",
        "add_sync_arguments",
        "write the current state of changed keys to the target tables",
    ),
    "parquet": (
        "ddbshard.commands.parquet",
        "add_parquet_arguments",
        "turn DynamoDB-JSON lines into a Parquet dataset",
    ),
    "diff": (
        "ddbshard.commands.diff",
        "add_diff_arguments",
        "compare what the targets should hold with what they hold",
    ),
}


# The local output of commands that write one file or folder given on the command line,
# checked before they read anything: (argument, what to call it, is it a file).
_LOCAL_OUTPUT = {"keys": ("out", "--out", True), "demo": ("out", "OUT", False)}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that command's arguments are complete (the others
    are listed for --help but their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Split, reshape and copy DynamoDB table exports into ImportTable-ready shards.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check DynamoDB-JSON line files against DynamoDB's rules")
    p.add_argument("paths", nargs="+", help="files of export lines (.json, .json.gz, .json.zst)")
    p.add_argument("--shape", choices=["export", "map", "any"], default="export")
    p.add_argument("--show", type=int, default=10, help="refusals to print (default 10)")

    p = sub.add_parser("split", help="route, transform and shard an export (the main job)")
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
    p.add_argument("--workers", type=_positive, help="worker processes (default: one per CPU)")
    p.add_argument(
        "--on-bad-file",
        choices=["stop", "skip"],
        default="stop",
        help="a corrupt, truncated, missing or mismatched input file stops the run (default) "
        "or is skipped and reported",
    )
    p.add_argument(
        "--max-rejects",
        type=_positive,
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
        type=_positive,
        help="nodes in the array job (default: AWS_BATCH_JOB_ARRAY_SIZE); finalize joins them",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("finalize", help="join the nodes of an array-job split (after all ran)")
    p.add_argument("config", help="the migration's TOML config")
    p.add_argument("--s3-dest", help="as for split, when dest is a local folder")

    p = sub.add_parser("demo", help="run the main job on an export shipped in the package")
    p.add_argument("out", nargs="?", default="ddbshard-demo", help="output folder")

    p = sub.add_parser("import", help="create the target tables from the shards with ImportTable")
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

    for name, (module, adder, help_text) in _ARGUMENTS_WITH_CODE.items():
        p = sub.add_parser(name, help=help_text)
        if command in (None, name):
            getattr(importlib.import_module(module), adder)(p)
    return parser


def _prog() -> str:
    """How the user ran us, for usage lines: `ddbshard` (the installed script, by whatever
    name it was linked as), else `python -m ddbshard`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("ddbshard") else "python -m ddbshard"


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 1")
    return n


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first argument that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


class Terminated(BaseException):
    """SIGTERM (a scheduler stopping the job, `timeout`, `kill`): handled as Ctrl-C is."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _stop_signals(handler: Any) -> None:
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _terminate)
    try:
        parser = build_parser(_command_in(argv))
        args = parser.parse_args(argv)
    except (KeyboardInterrupt, Terminated):
        return 130
    try:
        if args.command in _LOCAL_OUTPUT:
            from ddbshard.storage import check_local_output

            attr, what, is_file = _LOCAL_OUTPUT[args.command]
            check_local_output(getattr(args, attr), what, file=is_file)
        if args.command == "validate":
            from ddbshard.commands.validate import run_validate

            return run_validate(args.paths, shape=args.shape, show=args.show)
        if args.command == "split":
            from ddbshard.commands.split import run_split_command

            return run_split_command(args)
        if args.command == "finalize":
            from ddbshard.commands.split import run_finalize_command

            return run_finalize_command(args)
        if args.command == "demo":
            from ddbshard.commands.demo import run_demo

            return run_demo(args.out)
        if args.command == "import":
            from ddbshard.commands.importcmd import run_import_command

            return run_import_command(args)
        if args.command == "init":
            from ddbshard.commands.init import run_init

            return run_init(args)
        if args.command == "estimate":
            from ddbshard.commands.estimate import run_estimate

            return run_estimate(args)
        if args.command == "keys":
            from ddbshard.commands.keys import run_keys

            return run_keys(args)
        if args.command == "sync":
            from ddbshard.commands.sync import run_sync

            return run_sync(args)
        if args.command == "parquet":
            from ddbshard.commands.parquet import run_parquet

            return run_parquet(args)
        if args.command == "diff":
            from ddbshard.commands.diff import run_diff_command

            return run_diff_command(args)
        parser.error(f"unknown command {args.command}")
    except (KeyboardInterrupt, Terminated) as e:
        _stop_signals(signal.SIG_IGN)  # a second Ctrl-C while this one is handled: no traceback
        print(
            "ddbshard: interrupted (a split continues from its checkpoint with --resume)",
            file=sys.stderr,
        )
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:
        line = None if args.debug else _error_line(e, args)
        if line is None:
            raise
        print(f"ddbshard: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# Commands whose --region names the AWS Region they call (estimate's only picks its rates).
_REGION_FLAG = ("init", "sync")


def _error_line(e: Exception, args: argparse.Namespace) -> str | None:
    """The one line for an error the user can act on; None for a bug (its traceback shows)."""
    from ddbshard.storage import NO_REGION, aws_setup_problem

    # First, even inside one of ours: "no credentials" says what to set, which the object
    # being read when botocore found out does not.
    problem = aws_setup_problem(e)
    if problem == NO_REGION and args.command in _REGION_FLAG:
        problem = f"{problem}, or pass --region"
    if problem is not None:
        return problem
    if isinstance(e, DdbShardError):
        # rstrip: a reason that quotes another program's output (a credential process's
        # stderr, through a worker) may end in a newline.
        return str(e).rstrip()
    if isinstance(e, OSError):
        # A local file or folder this run could not write or read, met where no command
        # check caught it first.
        what = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        why = e.strerror or str(e) or type(e).__name__
        return f"{what}: {why}" if what else why
    return None
