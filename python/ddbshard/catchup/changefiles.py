"""Reading change records out of files: which files, how they are laid out, where each record is.

Inputs are what `ddbshard.io.source.resolve_source` takes (a file, a folder, a glob, or an export
root with manifests; local or s3://), so an incremental export is read through its
`manifest-files.json` (its data files sit in the shared `AWSDynamoDB/data/` folder) and every
listed file's MD5 and line count are checked, as split checks a full export's.

A file holds records one of two ways, told apart by its first non-blank line:

- JSON lines: one record (or one Lambda event `{"Records": [...]}`) per line, as consumers
  store streams and as incremental exports are written; a bad line is reported as `line N`;
- one JSON document: a Lambda event `{"Records": [...]}` or a GetRecords response, a single
  record, or an array of records, usually pretty-printed; positions are `Records[i]`.

gzip and zstd are recognised by their first bytes. Nothing here raises for bad records: they
come out as `Malformed` with the file and position. A JSON object that names a member twice is
one of them (see ddbshard.catchup.changes.parse_json).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

from ddbshard.catchup.changes import (
    Change,
    DuplicateKey,
    RecordError,
    duplicate_message,
    parse_json,
    parse_record,
)
from ddbshard.exceptions import InputError
from ddbshard.io.source import InputFile, resolve_source
from ddbshard.io.storage import describe_os_error, url_to_fs

__all__ = ["Malformed", "open_lines", "read_changes"]

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True, slots=True)
class Malformed:
    where: str
    reason: str


def read_changes(inputs: Sequence[str], kind: str) -> Iterator[Change | Malformed]:
    """Every record of every input, in input order, as a Change or a Malformed."""
    for url in inputs:
        source = resolve_source(url)
        if source.missing:
            listed = ", ".join(sorted(source.missing))
            raise InputError(f"{url}: files listed in the manifest are missing: {listed}")
        summary = source.summary or {}
        if kind == "incremental" and summary.get("exportType") == "FULL_EXPORT":
            raise InputError(
                f"{url}: a full export; --from incremental reads an incremental export "
                "(ExportType INCREMENTAL_EXPORT)"
            )
        old_images = summary.get("outputView") == "NEW_AND_OLD_IMAGES"
        single = len(source.files) == 1 and source.summary is None
        for f in source.files:
            # Names as the user knows them: the argument for one file, else relative to the
            # folder or export root given.
            yield from _read_file(source.fs, f, url if single else f.name, kind, old_images)


def open_lines(url: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of one local or s3:// file, plain, gzip or zstd."""
    fs, path = url_to_fs(url)
    try:
        raw = fs.open(path, "rb")
    except OSError as e:
        raise InputError(f"{url}: cannot open: {describe_os_error(e)}") from e
    with raw:
        try:
            yield from enumerate(_decompressed(_Md5Reader(raw)), 1)
        except _decode_errors() as e:
            raise InputError(f"{url}: cannot read: {e}") from e


def _read_file(
    fs: Any, f: InputFile, name: str, kind: str, old_images: bool
) -> Iterator[Change | Malformed]:
    try:
        raw = fs.open(f.path, "rb")
    except OSError as e:
        raise InputError(f"{name}: cannot open: {describe_os_error(e)}") from e
    with raw:
        hashed = _Md5Reader(raw)
        lines = 0
        try:
            for where, record in _records(_decompressed(hashed), name):
                lines += 1 if where.line_counted else 0
                if isinstance(record, Malformed):
                    yield record
                    continue
                try:
                    yield parse_record(kind, record, where.text, old_images=old_images)
                except RecordError as e:
                    yield Malformed(where.text, str(e))
        except _decode_errors() as e:
            raise InputError(f"{name}: cannot read: {e}") from e
    if f.md5_base64 is not None and hashed.base64() != f.md5_base64:
        raise InputError(
            f"{name}: MD5 {hashed.base64()} does not match the manifest's {f.md5_base64} "
            "(file changed or corrupt)"
        )
    if f.item_count is not None and lines != f.item_count:
        raise InputError(f"{name}: {lines} lines read, the manifest says {f.item_count}")


def _decode_errors() -> tuple[type[Exception], ...]:
    """What a corrupt or truncated file raises while read (gzip: OSError or EOFError)."""
    import zstandard

    return (OSError, EOFError, zstandard.ZstdError)


class _Md5Reader(io.RawIOBase):
    """Passes reads through, hashing the bytes as they go (the manifest's MD5 is of the
    compressed object)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.md5 = hashlib.md5()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.md5.update(data)
        buffer[: len(data)] = data
        return len(data)

    def base64(self) -> str:
        return base64.b64encode(self.md5.digest()).decode()


def _decompressed(raw: _Md5Reader) -> BinaryIO:
    stream = io.BufferedReader(raw, buffer_size=1 << 20)
    magic = stream.peek(4)[:4]
    if magic.startswith(_GZIP):
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    if magic.startswith(_ZSTD):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)
    return stream


@dataclass(frozen=True, slots=True)
class _Where:
    text: str
    line_counted: bool  # the record is a line of its own (the manifest counts those)


def _records(stream: BinaryIO, name: str) -> Iterator[tuple[_Where, Any]]:
    first = b""
    for line in stream:
        if line.strip():
            first = line
            break
    else:
        return  # an empty file (AWS writes one for an empty partition)
    head = _loads(first)
    if isinstance(head, dict) or (isinstance(head, _Bad) and head.duplicate):
        yield from _lines(first, stream, name)
        return
    text = first + stream.read()
    marking = _Marking()
    try:
        doc = json.loads(text, parse_float=Decimal, object_pairs_hook=marking)
    except ValueError as e:
        if any(isinstance(_loads(ln), dict) for ln in text.splitlines()):
            yield from _lines(b"", iter(text.splitlines(keepends=True)), name)
        else:
            yield _Where(name, True), Malformed(name, f"not JSON: {e}")
        return
    if not marking.count:
        yield from _expand(doc, name, counted=False)
    elif isinstance(doc, _Duplicated):  # the envelope itself: no record in it can be trusted
        yield _Where(name, True), Malformed(name, doc.reason)
    else:
        for where, record in _expand(doc, name, counted=False):
            reason = _duplicate_in(record)
            yield where, (record if reason is None else Malformed(where.text, reason))


class _Duplicated(dict[str, Any]):
    reason = ""


class _Marking:
    """A json object_pairs_hook for whole-file documents: an object naming a member twice is let
    through marked (a _Duplicated), so that only the records holding one are malformed, not the
    file with all its other records."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        self.count += 1
        marked = _Duplicated(obj)
        marked.reason = duplicate_message(pairs)
        return marked


def _duplicate_in(value: Any) -> str | None:
    if isinstance(value, _Duplicated):
        return value.reason
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for child in value:
            found = _duplicate_in(child)
            if found is not None:
                return found
    return None


def _lines(first: bytes, rest: Any, name: str) -> Iterator[tuple[_Where, Any]]:
    number = 0
    for line in _chain(first, rest):
        number += 1
        if not line.strip():
            continue
        at = f"{name}: line {number}"
        record = _loads(line)
        if isinstance(record, _Bad):
            yield _Where(at, True), Malformed(at, record.reason)
        else:
            yield from _expand(record, at, counted=True)


def _chain(first: bytes, rest: Any) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _expand(doc: Any, at: str, *, counted: bool) -> Iterator[tuple[_Where, Any]]:
    """The records of a document: a Lambda event or GetRecords response (`Records`), an array,
    or one record."""
    if isinstance(doc, dict) and isinstance(doc.get("Records"), list):
        for i, record in enumerate(doc["Records"]):
            yield _Where(f"{at}: Records[{i}]", counted and i == 0), record
    elif isinstance(doc, list) and not counted:  # an array of records fills a file, not a line
        for i, record in enumerate(doc):
            yield _Where(f"{at}: [{i}]", counted and i == 0), record
    else:
        yield _Where(at, counted), doc


class _Bad:
    def __init__(self, reason: str, *, duplicate: bool = False) -> None:
        self.reason = reason
        self.duplicate = duplicate  # valid JSON syntax, but a member named twice


def _loads(line: bytes) -> Any:
    try:
        return parse_json(line)
    except DuplicateKey as e:
        return _Bad(str(e), duplicate=True)
    except ValueError as e:
        return _Bad(f"not JSON: {e}")
