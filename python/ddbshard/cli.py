"""Command line: parse arguments, hand the work to the command's module, map errors to exits.

Exit status (DESIGN.md): 0 success; 1 the job ran but found problems (rejected items,
differences); 2 bad usage, bad config or unreadable input. Errors are one line; a traceback
only with --debug. That holds for the errors of the environment too, whichever command meets
them: missing AWS credentials, Region or profile (storage.aws_setup_problem), and a local file
or folder that cannot be written (OSError, the last resort behind the commands' own checks).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ddbshard.commands import COMMANDS, load
from ddbshard.exceptions import DdbShardError, Terminated

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that command's arguments are complete (the others
    are listed for --help but their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Split, reshape and copy DynamoDB table exports into ImportTable-ready shards.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if command in (None, name):
            load(name).add_arguments(p)
    return parser


def _prog() -> str:
    """How the user ran us, for usage lines: `ddbshard` (the installed script, by whatever
    name it was linked as), else `python -m ddbshard`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("ddbshard") else "python -m ddbshard"


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named on the command line: the first argument that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


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
        code: int = load(args.command).run(args)
        return code
    except (KeyboardInterrupt, Terminated) as e:
        _stop_signals(signal.SIG_IGN)  # a second Ctrl-C while this one is handled: no traceback
        print(f"ddbshard: interrupted{_AFTER_INTERRUPT.get(args.command, '')}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:
        line = None if args.debug else _error_line(e, args)
        if line is None:
            raise
        print(f"ddbshard: error: {line}", file=sys.stderr)
        return EXIT_USAGE


# What to do after a Ctrl-C, for the commands that keep a checkpoint (the others just stop).
_AFTER_INTERRUPT = {
    "split": " (a split continues from its checkpoint with --resume)",
    "replicate": " (run it again: it continues from its checkpoint)",
    "keys": " (with --checkpoint, run it again to continue)",
}


# Commands whose --region names the AWS Region they call (estimate's only picks its rates).
_REGION_FLAG = ("init", "sync")


def _error_line(e: Exception, args: argparse.Namespace) -> str | None:
    """The one line for an error the user can act on; None for a bug (its traceback shows)."""
    from ddbshard.io.storage import NO_REGION, aws_setup_problem

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
