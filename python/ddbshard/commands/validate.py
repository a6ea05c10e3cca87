"""`validate`: stream line files through the native reader and report what DynamoDB would refuse."""

from __future__ import annotations

import argparse
import sys

from ddbshard._core import LineReader
from ddbshard.exceptions import DecompressError, InputError

CHUNK = 4 << 20  # bytes per call into Rust: the GIL is released once per chunk

Refusal = tuple[int, str, str, bytes]  # line, reason code, message, raw line


def validate_file(
    path: str, shape: str = "export"
) -> tuple[LineReader, list[tuple[int, str, str, bytes]]]:
    """Reads one file in chunks; returns the reader (counts) and its refusals."""
    reader = LineReader(shape)
    refusals: list[Refusal] = []
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, read in chunks
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}") from e
    try:
        with f:
            while chunk := f.read(CHUNK):
                reader.feed(chunk)
                refusals.extend(reader.take_refusals())
        reader.finish()
    except DecompressError as e:  # corrupt, truncated, or a compression not read: name the file
        raise InputError(f"{path}: {e}") from e
    refusals.extend(reader.take_refusals())
    return reader, refusals


def run_validate(paths: list[str], *, shape: str, show: int) -> int:
    total_items = total_refused = 0
    for path in paths:
        reader, refusals = validate_file(path, shape)
        total_items += reader.items
        total_refused += reader.refused
        print(f"{path}: {reader.items} items valid, {reader.refused} refused")
        for line, reason, message, _raw in refusals[:show]:
            print(f"  line {line}: {reason}: {message}")
    print(f"total: {total_items} valid, {total_refused} refused", file=sys.stderr)
    return 1 if total_refused else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="files of export lines (.json, .json.gz, .json.zst)")
    p.add_argument("--shape", choices=["export", "map", "any"], default="export")
    p.add_argument("--show", type=int, default=10, help="refusals to print (default 10)")


def run(args: argparse.Namespace) -> int:
    return run_validate(args.paths, shape=args.shape, show=args.show)
