"""Parquet copies of DynamoDB items: what `parquet` writes and `diff` joins.

A copy is a folder of `part-NNNNN.parquet` files (local or s3://) with one row per item:

| column | type | what |
|---|---|---|
| each key attribute | string (S, N) or binary (B) | the key value; N as canonical decimal text |
| `<key>_f64` (N keys) | float64 | the same number when a double holds it exactly, else null |
| `item` | string | the item in canonical DynamoDB JSON (ddbshard_core::canonical) |
| `item_hash` | int64 | XXH3-64 (seed 0) of `item`'s UTF-8 bytes, as the int64 with the same bits |
| `key_hash` (with keys) | int64 | XXH3-64 of the key's encoding (columns.rs `key_encoding`) |
| `source_key` (routed) | string | the source item's key as wire DynamoDB JSON, when known |
| `file`, `line` | string, int64 | where the item was read (line is null for routed copies) |

plus, with `--flatten`, one column per top-level attribute of a single type. Every file carries
the copy's description (keys, target, routed or not, source key) in its Parquet key-value
metadata under `ddbshard`, which `diff` reads to know what it is given. `_summary.json` and
`_rejects/rejects.jsonl` sit beside the parts (readers skip `_` files).

The Rust core does all per-item work: `_core.ColumnBuilder` reads compressed chunks and hands
back Arrow-layout buffers, which become pyarrow arrays with `Array.from_buffers` (no copy, no
Python object per item). With a config and a target, the source first goes through the same
native `Splitter` that `split` runs (no compression, one shard per target), and the target's
output lines are what the builder reads: a routed copy is "what T should contain". When the
source table's key is known, the Splitter also hands out each output line's source key, which
the builder takes into the `source_key` column (`diff` writes it into its keys files).
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from ddbshard import crashpoints
from ddbshard._core import ColumnBuilder, Splitter, flatten_items
from ddbshard.compare.livescan import LiveScan
from ddbshard.config import CoreSpec, SplitConfig, TargetConfig, build_core_spec
from ddbshard.exceptions import ConfigError, DecompressError, InputError
from ddbshard.io.source import resolve_source
from ddbshard.io.storage import describe_os_error, url_to_fs
from ddbshard.progress import Progress

__all__ = [
    "FIXED_COLUMNS",
    "CopyMeta",
    "CopyOutput",
    "CopyResult",
    "copy_meta",
    "is_parquet_copy",
    "make_copies",
    "parquet_files",
    "target_keys",
]

FORMAT = 3  # 2: key_hash column; 3: source_key column (routed copies)
META_KEY = b"ddbshard"
FIXED_COLUMNS = ("item", "item_hash", "key_hash", "source_key", "file", "line")
CHUNK = 8 << 20  # bytes per call into Rust (the GIL is released once per chunk)
# A row group per batch: at most this many rows or this much item text, so a scan reads
# tens of MB per column chunk (scanners like ~128 MB groups; items are ~0.3-1 KB).
BATCH_ROWS = 256 * 1024
BATCH_BYTES = 64 << 20
GROUPS_PER_FILE = 8  # up to ~2M rows or ~1 GB of item text per file
MAX_FLAT_COLUMNS = 1000

Keys = tuple[tuple[str, str], ...]  # ((attribute, "S" | "N" | "B"), ...), hash key first


@dataclass(frozen=True)
class CopyMeta:
    """What a Parquet copy holds, from its files' metadata."""

    keys: Keys
    target: str | None  # the config target it was made for (routed or keyed as)
    routed: bool  # the source went through the target's routing and transforms
    source: str
    flattened: dict[str, str] = field(default_factory=dict)
    # The source table's key attributes, when the copy has the `source_key` column.
    source_key: tuple[str, ...] | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "keys": [list(k) for k in self.keys],
                "target": self.target,
                "routed": self.routed,
                "source": self.source,
                "flattened": self.flattened,
                "source_key": list(self.source_key) if self.source_key else None,
                "hash": "xxh3_64 seed 0 of item (UTF-8), stored as int64 bits",
            }
        ).encode()

    @staticmethod
    def from_json(data: bytes) -> CopyMeta:
        d = json.loads(data)
        source_key = d.get("source_key")
        return CopyMeta(
            keys=tuple((str(a), str(t)) for a, t in d.get("keys", [])),
            target=d.get("target"),
            routed=bool(d.get("routed")),
            source=str(d.get("source", "")),
            flattened=dict(d.get("flattened") or {}),
            source_key=tuple(str(a) for a in source_key) if source_key else None,
        )


@dataclass
class CopyOutput:
    """One copy to write: where, keyed how, and (when routing) for which target."""

    dest: str
    keys: Keys
    target: str | None = None
    flatten: bool = False
    # filled in by make_copies
    files: list[str] = field(default_factory=list)
    rows: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    flattened: dict[str, str] = field(default_factory=dict)
    not_flattened: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class CopyResult:
    outputs: list[CopyOutput]
    read: int  # source lines read
    source_rejected: int  # source lines refused by the parser (not tied to a target)
    source_reasons: dict[str, int]
    unmatched: int
    bytes_in: int
    seconds: float


def target_keys(target: TargetConfig) -> Keys:
    """The table key of a target, with its declared types."""
    names = [target.hash_key] + ([target.range_key] if target.range_key else [])
    return tuple((n, target.key_types[n]) for n in names)


def key_columns(keys: Keys) -> list[str]:
    out: list[str] = []
    for name, t in keys:
        out.append(name)
        if t == "N":
            out.append(f"{name}_f64")
    return out


def schema(keys: Keys, meta: CopyMeta) -> pa.Schema:
    fields = []
    for name, t in keys:
        fields.append(pa.field(name, pa.large_binary() if t == "B" else pa.large_string(), False))
        if t == "N":
            fields.append(pa.field(f"{name}_f64", pa.float64()))
    fields += [
        pa.field("item", pa.large_string(), False),
        pa.field("item_hash", pa.int64(), False),
    ]
    if keys:
        fields.append(pa.field("key_hash", pa.int64(), False))
    if meta.source_key:
        fields.append(pa.field("source_key", pa.large_string(), False))
    fields += [
        pa.field("file", pa.large_string(), False),
        pa.field("line", pa.int64()),
    ]
    return pa.schema(fields, metadata={META_KEY: meta.to_json()})


def check_key_names(keys: Keys) -> None:
    names = key_columns(keys) + list(FIXED_COLUMNS)
    for n in names:
        if names.count(n) > 1:
            raise ConfigError(
                f"key attribute {n!r} has the name of another column of a Parquet copy "
                f"({', '.join(FIXED_COLUMNS)}, <N key>_f64)"
            )


def _buf(b: bytes | None) -> pa.Buffer | None:
    return None if b is None else pa.py_buffer(b)


def record_batch(batch: dict[str, Any], sch: pa.Schema) -> pa.RecordBatch:
    """The builder's buffers as a record batch (zero copy but for the file names)."""
    n = batch["rows"]
    arrays: list[pa.Array] = []
    for k in batch["keys"]:
        t = pa.large_binary() if k["type"] == "B" else pa.large_string()
        arrays.append(
            pa.Array.from_buffers(t, n, [None, _buf(k["offsets"]), _buf(k["data"])], null_count=0)
        )
        if k["type"] == "N":
            arrays.append(
                pa.Array.from_buffers(
                    pa.float64(),
                    n,
                    [_buf(k["float_validity"]), _buf(k["float"])],
                    null_count=k["float_nulls"],
                )
            )
    arrays.append(
        pa.Array.from_buffers(
            pa.large_string(),
            n,
            [None, _buf(batch["item_offsets"]), _buf(batch["item_data"])],
            null_count=0,
        )
    )
    arrays.append(pa.Array.from_buffers(pa.int64(), n, [None, _buf(batch["hash"])], null_count=0))
    if batch["keys"]:
        key_hash = _buf(batch["key_hash"])
        arrays.append(pa.Array.from_buffers(pa.int64(), n, [None, key_hash], null_count=0))
    if "source_key" in sch.names:
        source_key = [None, _buf(batch["source_key_offsets"]), _buf(batch["source_key_data"])]
        arrays.append(pa.Array.from_buffers(pa.large_string(), n, source_key, null_count=0))
    index = pa.Array.from_buffers(pa.int32(), n, [None, _buf(batch["file_index"])], null_count=0)
    arrays.append(pa.array(batch["files"], pa.large_string()).take(index))
    arrays.append(
        pa.Array.from_buffers(
            pa.int64(),
            n,
            [_buf(batch["line_validity"]), _buf(batch["line"])],
            null_count=batch["line_nulls"],
        )
    )
    return pa.RecordBatch.from_arrays(arrays, schema=sch)


# --------------------------------------------------------------------------------------------
# Where copies live


def _is_parquet_name(path: str) -> bool:
    return path.endswith(".parquet") and not posixpath.basename(path).startswith(("_", "."))


# In a copy's folder from its first part until its last is written: a copy whose run was
# killed (SIGKILL, an OOM kill: no cleanup runs) keeps it, and is refused as input. Its parts
# are valid Parquet with the copy's metadata, but fewer: as diff's expected side, every item
# it lacks would be unexpected, which sync then deletes from the target.
INCOMPLETE = "_incomplete"


def parquet_files(url: str) -> tuple[AbstractFileSystem, list[str]]:
    """The Parquet files of a copy (a folder of them, or one file), in name order; InputError
    for a copy whose run was cut short before it was whole."""
    fs, path = url_to_fs(url)
    path = path.rstrip("/")
    try:
        if fs.isfile(path):
            return fs, [path] if path.endswith(".parquet") else []
        if not fs.isdir(path):
            return fs, []
        found = sorted(p for p in fs.find(path) if _is_parquet_name(p))
        cut_short = fs.exists(posixpath.join(path, INCOMPLETE))
    except OSError as e:
        raise InputError(f"{url}: cannot list: {describe_os_error(e)}") from e
    if cut_short:
        raise InputError(
            f"{url}: a copy cut short (the run making it was killed before its last part was "
            "written): make it again (parquet --overwrite, or run diff again)"
        )
    return fs, [p for p in found if "/_" not in p[len(path) :]]


def is_parquet_copy(url: str) -> bool:
    """Whether `url` is a Parquet dataset (rather than DynamoDB-JSON lines or an export)."""
    fs, path = url_to_fs(url)
    path = path.rstrip("/")
    if path.endswith(".parquet"):
        return True
    try:
        if fs.exists(posixpath.join(path, "manifest-summary.json")):
            return False
    except OSError:
        return False
    return bool(parquet_files(url)[1])


def copy_meta(url: str) -> CopyMeta | None:
    """The description ddbshard wrote into a copy's first file; None for another Parquet."""
    fs, files = parquet_files(url)
    if not files:
        raise InputError(f"{url}: no Parquet files")
    try:
        with fs.open(files[0], "rb") as f:
            meta = pq.read_schema(f).metadata or {}
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{fs.unstrip_protocol(files[0])}: cannot read: {e}") from e
    if META_KEY not in meta:
        return None
    return CopyMeta.from_json(meta[META_KEY])


class PartNames:
    """Hands out `part-NNNNN.parquet` names, one sequence for every writer of a copy."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            name = f"part-{self._next:05d}.parquet"
            self._next += 1
            return name

    def handed_out(self) -> list[str]:
        with self._lock:
            return [f"part-{i:05d}.parquet" for i in range(self._next)]


class DatasetWriter:
    """Writes record batches as row groups of Parquet files under `dest`, starting a new file
    every GROUPS_PER_FILE groups; file names come from `names` (shared by a copy's writers)."""

    def __init__(self, dest: str, sch: pa.Schema, names: Callable[[], str]) -> None:
        self.dest = dest.rstrip("/")
        self.fs, self.root = url_to_fs(self.dest)
        self.schema = sch
        self.names = names
        self.files: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._handle: Any = None
        self._groups = 0

    def write(self, rb: pa.RecordBatch) -> None:
        if rb.num_rows == 0:
            return
        if self._writer is None or self._groups >= GROUPS_PER_FILE:
            self._open_file()
        assert self._writer is not None
        self._writer.write_batch(rb, row_group_size=rb.num_rows)
        self._groups += 1

    def _open_file(self) -> None:
        """Ends the file being written and starts the next one."""
        self._close_file()
        name = self.names()
        path = posixpath.join(self.root, name)
        try:
            if isinstance(self.fs, LocalFileSystem):
                # A path, not a Python file object: pyarrow then writes without the GIL.
                self.fs.makedirs(self.root, exist_ok=True)
                where: Any = path
            else:
                where = self._handle = self.fs.open(path, "wb")
            self._writer = pq.ParquetWriter(
                where, self.schema, compression="zstd", write_statistics=True
            )
        except (OSError, pa.ArrowException) as e:
            why = describe_os_error(e) if isinstance(e, OSError) else str(e)
            raise InputError(f"{self.dest}/{name}: cannot write: {why}") from e
        self.files.append(name)
        self._groups = 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError as e:
                raise InputError(f"{self.dest}: cannot write: {describe_os_error(e)}") from e
            self._handle = None

    def close(self) -> list[str]:
        self._close_file()
        return self.files

    def abort(self) -> None:
        """Closes the file being written now, ignoring errors, so that `_remove_parts` can
        remove it after: left to the garbage collector, pyarrow's writer would close it into
        a valid file (and an s3fs handle upload it) after the removal."""
        writer, handle = self._writer, self._handle
        self._writer = self._handle = None
        if writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                writer.close()
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def write_empty(self) -> None:
        """One file with no rows: a copy of nothing is still a copy (with its schema)."""
        self._open_file()
        self._close_file()


def prepare_dest(url: str, *, overwrite: bool) -> None:
    """Refuses a destination that already holds a copy, unless told to replace it."""
    fs, path = url_to_fs(url)
    path = path.rstrip("/")
    try:
        if not fs.exists(path):
            return
        if not fs.isdir(path):
            raise InputError(f"{url}: exists and is not a folder")
        entries = fs.ls(path, detail=False)
    except OSError as e:
        raise InputError(f"{url}: cannot list: {describe_os_error(e)}") from e
    names = {posixpath.basename(p.rstrip("/")): p for p in entries}
    ours = [
        p
        for name, p in names.items()
        if name.startswith("part-") or name in ("_summary.json", "_rejects", INCOMPLETE)
    ]
    if not ours:
        return
    if not overwrite:
        what = "a copy cut short (its run was killed)" if INCOMPLETE in names else "a Parquet copy"
        raise InputError(f"{url}: already holds {what}; use --overwrite to replace it")
    for p in ours:
        fs.rm(p, recursive=True)


# --------------------------------------------------------------------------------------------
# Reading the source


@dataclass
class _Input:
    name: str  # as reject records and the file column name it
    chunks: Iterator[bytes]
    line_numbers: bool  # lines are the source's own
    item_count: int | None = None
    md5_base64: str | None = None
    md5: Any = None


def _file_chunks(fs: AbstractFileSystem, path: str, url: str) -> Iterator[bytes]:
    try:
        handle = fs.open(path, "rb")
    except OSError as e:
        raise InputError(f"{fs.unstrip_protocol(path)}: cannot open: {describe_os_error(e)}") from e
    with handle:
        while True:
            try:
                chunk = handle.read(CHUNK)
            except OSError as e:
                raise InputError(
                    f"{fs.unstrip_protocol(path)}: cannot read: {describe_os_error(e)}"
                ) from e
            if not chunk:
                return
            yield chunk


def _parquet_chunks(fs: AbstractFileSystem, path: str) -> Iterator[bytes]:
    """`{"Item":...}` lines of a copy's items, made by pyarrow's kernels a row group at a time."""
    import pyarrow.compute as pc  # only here: its import costs diff's start-up 60 ms

    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            for i in range(pf.num_row_groups):
                items = pf.read_row_group(i, columns=["item"]).column("item")
                for chunk in items.chunks:
                    t = chunk.type
                    lines = pc.binary_join_element_wise(
                        pa.scalar('{"Item":', t), chunk, pa.scalar("}\n", t), pa.scalar("", t)
                    )
                    yield _string_data(lines)
    except (OSError, pa.ArrowException, KeyError) as e:
        raise InputError(f"{fs.unstrip_protocol(path)}: cannot read items: {e}") from e


def _string_data(arr: pa.Array) -> bytes:
    """The concatenated values of a string array, as one bytes object."""
    if len(arr) == 0:
        return b""
    width = 8 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else 4
    offsets = arr.buffers()[1]
    first = int.from_bytes(offsets[arr.offset * width : (arr.offset + 1) * width], "little")
    end = (arr.offset + len(arr)) * width
    last = int.from_bytes(offsets[end : end + width], "little")
    return bytes(arr.buffers()[2][first:last].to_pybytes())


def _inputs(url: str | LiveScan) -> tuple[list[_Input], int | None, int]:
    """The source's files as inputs, its manifest item count, and its size in bytes; for a
    live table, its scan segments, and DescribeTable's counts (hours old: no check)."""
    if isinstance(url, LiveScan):
        info = url.describe()
        segments = [
            _Input(name=url.segment_name(i), chunks=url.chunks(i), line_numbers=True)
            for i in range(url.segments)
        ]
        return segments, info.item_count or None, info.size_bytes
    if is_parquet_copy(url):
        meta = copy_meta(url)
        if meta is not None and meta.routed:
            raise InputError(
                f"{url}: is a copy of target {meta.target} (already routed), not of the source"
            )
        fs, files = parquet_files(url)
        inputs = [
            _Input(name=posixpath.basename(p), chunks=_parquet_chunks(fs, p), line_numbers=False)
            for p in files
        ]
        return inputs, None, 0
    source = resolve_source(url)
    if source.missing:
        raise InputError(
            f"{url}: the manifest lists {len(source.missing)} file(s) that are not there, "
            f"such as {sorted(source.missing)[0]}"
        )
    inputs = [
        _Input(
            name=f.name,
            chunks=_file_chunks(source.fs, f.path, url),
            line_numbers=True,
            item_count=f.item_count,
            md5_base64=f.md5_base64,
        )
        for f in source.files
    ]
    return inputs, source.item_count, source.total_bytes


def _checked(inp: _Input) -> Iterator[bytes]:
    if inp.md5_base64 is None:
        yield from inp.chunks
        return
    md5 = hashlib.md5()
    for chunk in inp.chunks:
        md5.update(chunk)
        yield chunk
    got = base64.b64encode(md5.digest()).decode()
    if got != inp.md5_base64:
        raise InputError(
            f"{inp.name}: MD5 {got} does not match the manifest's {inp.md5_base64} "
            "(file changed or corrupt)"
        )


# --------------------------------------------------------------------------------------------
# The pass
#
# Each worker thread takes input files from a shared list and runs them through its own
# builders (and Splitter, when routing) into its own Parquet files. The native calls and
# pyarrow's writer both release the GIL, so threads scale with cores; each file's lines stay
# in one worker, so line numbers and manifest checks are per file as in `split`.


class _Sink:
    """One output of one worker: its builder, writer and rejects."""

    def __init__(self, out: CopyOutput, meta: CopyMeta, stage: str, names: PartNames) -> None:
        self.out = out
        self.meta = meta
        self.schema = schema(out.keys, meta)
        self.builder = ColumnBuilder(
            list(out.keys), out.target, out.flatten, "export", meta.source_key is not None
        )
        self.writer = DatasetWriter(stage, self.schema, names)
        # Reject records can be as many as the input lines: kept on disk, not in memory.
        self.rejects = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _finish_output
        self.rejected_bytes = 0
        self.routing_rejected = 0  # refused by the target's key checks in the Splitter
        self.routing_reasons: dict[str, int] = {}

    def add_rejects(self, data: bytes) -> None:
        if data:
            self.rejects.write(data)
            self.rejected_bytes += len(data)

    def pump(self) -> None:
        if self.builder.rows >= BATCH_ROWS or self.builder.batch_bytes >= BATCH_BYTES:
            self.flush()
        self.add_rejects(self.builder.take_rejects())

    def flush(self) -> None:
        if self.builder.rows:
            self.writer.write(record_batch(self.builder.take_batch(), self.schema))
        self.add_rejects(self.builder.take_rejects())


@dataclass
class _Tally:
    """Counts of the whole pass, shared by the workers (under `lock`)."""

    read: int = 0
    bytes_in: int = 0
    unmatched: int = 0
    source_reasons: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def default_workers() -> int:
    # Each worker holds a batch of up to BATCH_BYTES, its Arrow form and a row group being
    # compressed: ~3 x 64 MiB. Eight workers stay under 2 GB; --workers goes further.
    return max(1, min(os.cpu_count() or 1, 8))


def make_copies(
    source: str | LiveScan,
    outputs: Sequence[CopyOutput],
    *,
    config: SplitConfig | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    work_dir: str | None = None,
    workers: int | None = None,
    source_key: tuple[str, ...] | None = None,
) -> CopyResult:
    """Reads `source` (files, or a live table's scan) once and writes each output's copy.

    With `config`, the source goes through its routing and transforms and each output takes
    its `target`'s items; without, there is one output and it takes every item. With
    `source_key` (the source table's key attributes; routed copies only), each row also holds
    its source item's key (`source_key` column); a source item without it is refused
    (missing_key) by the copies it would be in.
    """
    start = time.monotonic()
    if config is None and len(outputs) != 1:
        raise ValueError("without a config, make_copies writes exactly one copy")
    if config is not None and len({o.target for o in outputs}) != len(outputs):
        raise ValueError("each routed copy needs its own target")
    for out in outputs:
        check_key_names(out.keys)
        prepare_dest(out.dest, overwrite=overwrite)
    inputs, item_count, total_bytes = _inputs(source)
    # After the source is found readable: a source refused (no credentials, a missing table)
    # leaves no folder behind.
    made = [_mark_incomplete(out.dest, True) for out in outputs]
    progress = Progress(
        total_items=item_count,
        total_bytes=total_bytes,
        enabled=not quiet,
        note=source.progress_note if isinstance(source, LiveScan) else None,
    )
    tmp = None
    if any(o.flatten for o in outputs):
        tmp = Path(tempfile.mkdtemp(prefix="ddbshard-flatten-", dir=work_dir))
    names = [PartNames() for _ in outputs]
    if source_key is not None and config is None:
        raise ValueError("a source key is kept by routed copies only")
    name = source.url if isinstance(source, LiveScan) else source
    metas = [
        CopyMeta(o.keys, o.target, config is not None, name, source_key=source_key) for o in outputs
    ]
    stages = [
        str(tmp / f"out{i}") if o.flatten and tmp is not None else o.dest
        for i, o in enumerate(outputs)
    ]
    spec = kept = None
    if config is not None:
        spec, kept = _routing_spec(config, {str(o.target) for o in outputs})
    tally = _Tally()
    queue = list(reversed(inputs))
    stop = threading.Event()

    def halt() -> None:
        stop.set()
        if isinstance(source, LiveScan):
            source.stop()  # its workers may be waiting out a budget or a backoff

    n_workers = max(1, min(workers or default_workers(), len(inputs) or 1))

    def work() -> list[_Sink]:
        sinks = [
            _Sink(o, m, st, nm) for o, m, st, nm in zip(outputs, metas, stages, names, strict=True)
        ]
        try:
            while not stop.is_set():
                with tally.lock:
                    if not queue:
                        break
                    inp = queue.pop()
                if spec is None:
                    _copy_plain(inp, sinks[0], tally, progress, stop)
                else:
                    assert kept is not None
                    _copy_routed(inp, sinks, spec, kept, source_key, tally, progress, stop)
            for s in sinks:
                s.flush()
                s.writer.close()
        except BaseException:
            halt()
            for s in sinks:
                s.writer.abort()
                s.rejects.close()
            raise
        return sinks

    futures: list[concurrent.futures.Future[list[_Sink]]] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(n_workers) as pool:
            futures = [pool.submit(work) for _ in range(n_workers)]
            try:
                per_worker = [_result(f) for f in futures]
            except BaseException:
                halt()
                raise
        if config is None:
            # Lines the parser refused are the source's problem; missing keys are the copy's.
            # Both are in the copy's rejects; the split is for the summary.
            for w in per_worker:
                for k, v in w[0].builder.counts()["reasons"].items():
                    if k not in ("missing_key", "wrong_key_type"):
                        tally.source_reasons[k] = tally.source_reasons.get(k, 0) + v
        for i, out in enumerate(outputs):
            _finish_output(out, [w[i] for w in per_worker], tmp)
        crashpoints.reached("copy_written")
        for out in outputs:
            _mark_incomplete(out.dest, False)
    except BaseException:
        # A copy cut short (a scan segment failing for good, a file not matching its MD5,
        # Ctrl-C) must not be left looking whole: its finished parts are valid Parquet with
        # the copy's metadata, and `diff --expected` given it (or diff reusing --work-dir)
        # would report every item it lacks as unexpected, which sync deletes from the target.
        for out, stage, nm in zip(outputs, stages, names, strict=True):
            _remove_parts(stage, nm.handed_out())
            if stage != out.dest:
                _remove_parts(out.dest, out.files)
        for out, folder in zip(outputs, made, strict=True):
            _remove_parts(out.dest, [INCOMPLETE])  # nothing left that could be taken for it
            if folder is not None:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # made by this run, and empty: as if never begun
        for f in futures:  # the workers that ended well hold their reject files still
            if f.done() and not f.cancelled() and f.exception() is None:
                for sink in f.result():
                    sink.rejects.close()
        raise
    finally:
        progress.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return CopyResult(
        outputs=list(outputs),
        read=tally.read,
        source_rejected=sum(tally.source_reasons.values()),
        source_reasons=dict(tally.source_reasons),
        unmatched=tally.unmatched,
        bytes_in=tally.bytes_in,
        seconds=time.monotonic() - start,
    )


def _result(future: concurrent.futures.Future[Any]) -> Any:
    """A worker's result, waited for in short naps: a SIGINT the kernel hands to another
    thread of the process (polars' pool, in diff) only runs Python's handler once the main
    thread wakes, and an untimed wait wakes when that worker ends: after its whole scan."""
    while True:
        try:
            return future.result(timeout=0.2)
        except concurrent.futures.TimeoutError:
            continue


def _copy_plain(
    inp: _Input, sink: _Sink, tally: _Tally, progress: Progress, stop: threading.Event
) -> None:
    builder = sink.builder
    start = seen = int(builder.counts()["read"])  # the builder counts across its files
    builder.begin_file(inp.name, inp.line_numbers)
    try:
        for chunk in _checked(inp):
            if stop.is_set():
                return
            builder.feed(chunk)
            sink.pump()
            read = int(builder.counts()["read"])
            _progress(tally, progress, len(chunk), read - seen, 0)
            seen = read
        builder.end_file()
    except DecompressError as e:
        raise InputError(f"{inp.name}: {e}") from e
    read = int(builder.counts()["read"])
    _progress(tally, progress, 0, read - seen, 0)
    _check_count(inp, read - start)
    sink.pump()


def _progress(tally: _Tally, progress: Progress, nbytes: int, read: int, unmatched: int) -> None:
    with tally.lock:
        tally.read += read
        tally.bytes_in += nbytes
        tally.unmatched += unmatched
        progress.update(tally.read, nbytes)


def _routing_spec(config: SplitConfig, wanted: set[str]) -> tuple[CoreSpec, list[str]]:
    """The Splitter spec for the targets `wanted`: every target before the last one wanted
    stays (with route "first", an earlier target takes items from later ones), later ones go;
    with route "all" only the wanted ones are needed."""
    names = [t.name for t in config.targets]
    if config.output.route == "all":
        keep = [n for n in names if n in wanted]
    else:
        last = max(names.index(n) for n in wanted)
        keep = names[: last + 1]
    # Items that go nowhere are counted, not recorded: they are not an error of the copy, and
    # unmatched = "error" must not stop it.
    spec = build_core_spec(
        config, {n: 1 for n in names}, compression="none", unmatched="drop", only=keep
    )
    return spec, keep


def _copy_routed(
    inp: _Input,
    sinks: list[_Sink],
    spec: CoreSpec,
    kept: list[str],
    source_key: tuple[str, ...] | None,
    tally: _Tally,
    progress: Progress,
    stop: threading.Event,
) -> None:
    # A Splitter per file: its counts are then the file's (for the manifest check).
    splitter = Splitter(spec)
    if source_key is not None:
        splitter.keep_source_key(list(source_key))
    by_index = {kept.index(str(s.out.target)): s for s in sinks}
    by_name = {str(s.out.target): s for s in sinks}
    source_reasons: dict[str, int] = {}
    seen = 0

    def pump() -> None:
        # Keys first: a line's key is made with it, so it is always there before the line.
        for t, keys in splitter.drain_source_keys():
            sink = by_index.get(t)
            if sink is not None:
                sink.builder.feed_source_keys(keys)
        for t, _shard, data in splitter.drain():
            sink = by_index.get(t)
            if sink is not None:
                sink.builder.feed(data)
                sink.pump()
        for line in splitter.take_rejects().splitlines():
            record = json.loads(line)
            target, reason = record.get("target"), str(record.get("reason"))
            if target is None:
                # A source line the parser refused: in every routed copy's rejects.
                for s in sinks:
                    s.add_rejects(line + b"\n")
                source_reasons[reason] = source_reasons.get(reason, 0) + 1
            elif target in by_name:
                sink = by_name[target]
                sink.add_rejects(line + b"\n")
                sink.routing_rejected += 1
                sink.routing_reasons[reason] = sink.routing_reasons.get(reason, 0) + 1

    splitter.begin_file(inp.name)
    for s in sinks:
        s.builder.begin_file(inp.name, False)
    try:
        for chunk in _checked(inp):
            if stop.is_set():
                return
            splitter.feed(chunk)
            pump()
            read = splitter.counts()["read"]
            _progress(tally, progress, len(chunk), read - seen, 0)
            seen = read
        splitter.end_file()
        pump()
        for s in sinks:
            s.builder.end_file()
            s.pump()
    except DecompressError as e:
        raise InputError(f"{inp.name}: {e}") from e
    c = splitter.counts()
    _progress(tally, progress, 0, c["read"] - seen, c["unmatched"])
    _check_count(inp, c["read"])
    with tally.lock:
        for k, v in source_reasons.items():
            tally.source_reasons[k] = tally.source_reasons.get(k, 0) + v
    for s in sinks:
        for k, v in source_reasons.items():
            s.routing_reasons[k] = s.routing_reasons.get(k, 0) + v
        s.routing_rejected += sum(source_reasons.values())


def _check_count(inp: _Input, read: int) -> None:
    if inp.item_count is not None and read != inp.item_count:
        raise InputError(f"{inp.name}: {read} lines read, the manifest says {inp.item_count}")


def _finish_output(out: CopyOutput, sinks: list[_Sink], tmp: Path | None) -> None:
    """Joins the workers' parts of one output: files, counts, rejects; then --flatten."""
    try:
        if not any(s.writer.files for s in sinks):
            sinks[0].writer.write_empty()
        out.files = sorted(f for s in sinks for f in s.writer.files)
        out.rows = sum(int(s.builder.counts()["items"]) for s in sinks)
        out.rejected = 0
        out.reasons = {}
        for s in sinks:
            c = s.builder.counts()
            out.rejected += int(c["rejected"]) + s.routing_rejected
            for reason, n in [*c["reasons"].items(), *s.routing_reasons.items()]:
                out.reasons[reason] = out.reasons.get(reason, 0) + n
        if out.flatten:
            assert tmp is not None
            _flatten(out, sinks, tmp)
        _write_rejects(out, sinks)
    finally:
        for s in sinks:
            s.rejects.close()


def _mark_incomplete(dest: str, incomplete: bool) -> str | None:
    """Puts the INCOMPLETE marker into a copy's folder before its first part, or takes it
    away once its last part is written. Returns the local folder it made (None if it was
    there already, or is not local)."""
    fs, path = url_to_fs(dest)
    marker = posixpath.join(path.rstrip("/"), INCOMPLETE)
    made = None
    try:
        if not incomplete:
            fs.rm(marker)
            return None
        if isinstance(fs, LocalFileSystem) and not fs.exists(path):
            fs.makedirs(path, exist_ok=True)
            made = path
        fs.pipe_file(marker, b"a copy is being written here; its parts are not all there yet\n")
    except OSError as e:
        raise InputError(f"{dest}: cannot write: {describe_os_error(e)}") from e
    return made


def _remove_parts(dest: str, names: list[str]) -> None:
    """Removes a copy's part files (best effort: the error that stopped the copy is the one
    to report, not a second one met while cleaning up)."""
    fs, path = url_to_fs(dest)
    for name in names:
        # OSError: never written (its worker stopped first), or gone already.
        with contextlib.suppress(OSError, ValueError):
            fs.rm(posixpath.join(path.rstrip("/"), name))


def _write_rejects(out: CopyOutput, sinks: list[_Sink]) -> None:
    if not any(s.rejected_bytes for s in sinks):
        return
    fs, path = url_to_fs(out.dest)
    target = posixpath.join(path.rstrip("/"), "_rejects", "rejects.jsonl")
    try:
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(posixpath.dirname(target), exist_ok=True)
        with fs.open(target, "wb") as f:
            for s in sinks:
                s.rejects.seek(0)
                while block := s.rejects.read(CHUNK):
                    f.write(block)
    except OSError as e:
        raise InputError(f"{out.dest}: cannot write rejects: {describe_os_error(e)}") from e


# --------------------------------------------------------------------------------------------
# --flatten


_FLAT_TYPES: dict[str, Callable[[], pa.DataType]] = {
    "S": pa.large_string,
    "N": pa.float64,
    "B": pa.large_binary,
    "BOOL": pa.bool_,
    "M": pa.large_string,
    "L": pa.large_string,
    "SS": lambda: pa.large_list(pa.large_string()),
    "NS": lambda: pa.large_list(pa.float64()),
    "BS": lambda: pa.large_list(pa.large_binary()),
}


def flat_plan(
    types: list[tuple[str, list[str]]], keys: Keys
) -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    """(attribute, type, column name) to flatten, and the attributes left out with their types.

    An attribute is flattened when all its values have one type, NULL aside (a NULL is a null
    in the column). Key attributes have their columns already. A name that is taken by a
    column of the copy is written as `attr.<name>`.
    """
    taken = set(key_columns(keys)) | set(FIXED_COLUMNS)
    key_names = {k for k, _ in keys}
    plan: list[tuple[str, str, str]] = []
    skipped: dict[str, list[str]] = {}
    for name, seen in types:
        if name in key_names:
            continue
        real = [t for t in seen if t != "NULL"]
        if len(real) != 1 or len(plan) >= MAX_FLAT_COLUMNS:
            skipped[name] = seen
            continue
        column = f"attr.{name}" if name in taken else name
        plan.append((name, real[0], column))
    return plan, skipped


def flat_arrays(rb: pa.RecordBatch | pa.Table, plan: list[tuple[str, str, str]]) -> list[pa.Array]:
    items = rb.column("item")
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    offsets_buf = items.buffers()[1]
    base = items.offset * 8
    offsets = offsets_buf[base : base + (len(items) + 1) * 8].to_pybytes()
    data = items.buffers()[2].to_pybytes()
    cols = flatten_items(offsets, data, [(name, t) for name, t, _ in plan])
    n = len(items)
    arrays = []
    for (_, t, _), c in zip(plan, cols, strict=True):
        dtype = _FLAT_TYPES[t]()
        validity = _buf(c["validity"])
        if t in ("N", "BOOL"):
            arrays.append(
                pa.Array.from_buffers(
                    dtype, n, [validity, _buf(c["values"])], null_count=c["nulls"]
                )
            )
        elif t in ("SS", "NS", "BS"):
            child_type = dtype.value_type
            if t == "NS":
                child_bufs = [None, _buf(c["child_values"])]
            else:
                child_bufs = [None, _buf(c["child_offsets"]), _buf(c["child_values"])]
            child = pa.Array.from_buffers(child_type, c["child_len"], child_bufs, null_count=0)
            arrays.append(
                pa.Array.from_buffers(
                    dtype,
                    n,
                    [validity, _buf(c["offsets"])],
                    null_count=c["nulls"],
                    children=[child],
                )
            )
        else:
            arrays.append(
                pa.Array.from_buffers(
                    dtype,
                    n,
                    [validity, _buf(c["offsets"]), _buf(c["values"])],
                    null_count=c["nulls"],
                )
            )
    return arrays


def _fixed_name(name: str) -> Callable[[], str]:
    return lambda: name


def _flatten(out: CopyOutput, sinks: list[_Sink], tmp: Path) -> None:
    """Second pass: the staged parts, with the flat columns added, written to the dest."""
    seen: dict[str, set[str]] = {}
    for s in sinks:
        for name, types in s.builder.attribute_types():
            seen.setdefault(name, set()).update(types)
    plan, skipped = flat_plan(sorted((k, sorted(v)) for k, v in seen.items()), out.keys)
    out.flattened = {column: t for _, t, column in plan}
    out.not_flattened = skipped
    first = sinks[0].meta
    meta = CopyMeta(
        first.keys, first.target, first.routed, first.source, out.flattened, first.source_key
    )
    base = schema(out.keys, meta)
    fields = list(base) + [pa.field(col, _FLAT_TYPES[t]()) for _, t, col in plan]
    full = pa.schema(fields, metadata=base.metadata)
    stage = Path(sinks[0].writer.root)
    files = []
    for name in out.files:
        # One output file per staged file, under the same name.
        writer = DatasetWriter(out.dest, full, _fixed_name(name))
        pf = pq.ParquetFile(stage / name)
        for g in range(pf.num_row_groups):
            table = pf.read_row_group(g)
            arrays = [table.column(i).combine_chunks() for i in range(table.num_columns)]
            arrays += flat_arrays(table, plan)
            writer.write(pa.RecordBatch.from_arrays(arrays, schema=full))
        files += writer.close()
        (stage / name).unlink()
    out.files = files
