"""A split worker: one process that streams input files through the native Splitter.

Each task is one input file. The worker reads it in multi-MiB chunks (ranged GETs on S3), feeds
them to a fresh Splitter (the GIL is released inside), and writes what the Splitter drains —
compressed shard blocks and reject records — to a local *spill* file. It never writes to the
destination: the driver appends a file's spill to the shards only once the file is complete and
checked, which is what makes a crash at any moment resumable (nothing of a half-read file
reaches the shards).

Round-robin dealing continues across files: the task says at which shard each target's dealing
starts, and the result says where it stopped.

Spill format: records of `<i32 target, u32 shard, u64 length>` + bytes; target -1 is reject
records.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import mmap
import multiprocessing
import os
import resource
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ddbshard._core import Splitter
from ddbshard.config.spec import CoreSpec
from ddbshard.exceptions import DecompressError, UnmatchedError
from ddbshard.io.storage import aws_setup_problem, cause_chain, describe_os_error, error_code
from ddbshard.split.state import local_disk_error

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

CHUNK = 4 << 20  # bytes per call into Rust: large enough to amortise the call, small for memory
PROGRESS_EVERY = 0.5  # seconds between progress messages to the driver
_HEADER = struct.Struct("<iIQ")
REJECTS = -1


@dataclass(frozen=True)
class Task:
    index: int  # position in Source.files
    path: str
    name: str
    item_count: int | None
    md5_base64: str | None
    spill: str
    next_shards: list[int]  # per target: the shard the next item goes to


@dataclass
class FileResult:
    index: int
    # "ok" | "bad" (file unusable: reason) | "fatal" (the run cannot go on) | "disk" (this
    # machine's disk failed writing the spill: the run stops, the input is not to blame)
    status: str
    reason: str = ""
    spill: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    shard_stats: list[list[tuple[int, int]]] = field(default_factory=list)
    bytes_in: int = 0
    bytes_uncompressed: int = 0
    next_shards: list[int] = field(default_factory=list)
    peak_rss: int = 0  # bytes: this worker's peak resident memory so far


class SpillWriteError(Exception):
    """Writing the spill file failed (disk full, I/O error): this machine's fault."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def write_spill_records(out: BinaryIO, splitter: Splitter) -> None:
    try:
        for t, s, data in splitter.drain():
            out.write(_HEADER.pack(t, s, len(data)))
            out.write(data)
        rejects = splitter.take_rejects()
        if rejects:
            out.write(_HEADER.pack(REJECTS, 0, len(rejects)))
            out.write(rejects)
    except OSError as e:
        raise SpillWriteError(e) from e


class SpillFile:
    """A finished spill file, mapped into memory: its records are views of the page cache
    (the driver writes them to the shards and hashes them without copying them into Python
    bytes, which cost it a page fault and a page to zero per 4 KiB). Use in a `with`: the views
    are released at its end and must not be kept past it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._views: list[memoryview] = []
        self._done = 0  # bytes of the map whose records have been handed out and used

    def __enter__(self) -> SpillFile:
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size:
                self._map = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
        return self

    def __exit__(self, *exc: object) -> None:
        for v in self._views:
            v.release()
        self._views.clear()
        if self._map is not None:
            self._map.close()
            self._map = None

    def records(self) -> Iterator[tuple[int, int, memoryview]]:
        """(target, shard, bytes) per record; a record cut short (a killed worker) ends them."""
        if self._map is None:
            return
        whole = memoryview(self._map)
        self._views.append(whole)
        at, size = 0, len(whole)
        while at + _HEADER.size <= size:
            t, s, n = _HEADER.unpack_from(whole, at)
            at += _HEADER.size
            if at + n > size:
                return
            view = whole[at : at + n]
            self._views.append(view)
            at += n
            yield t, s, view
            self._done = at

    def forget_used(self) -> None:
        """Drops the pages of the records used so far from this process's memory (the file
        stays in the page cache), so that a large spill does not pile up in the driver's RSS."""
        if self._map is None:
            return
        end = self._done - self._done % mmap.PAGESIZE
        if end > 0:
            self._map.madvise(mmap.MADV_DONTNEED, 0, end)


def split_file(
    task: Task,
    spec: CoreSpec,
    fs: AbstractFileSystem | None,
    report: Any,
) -> FileResult:
    """Streams one file through a Splitter into its spill file; checks it against the manifest.
    `fs` is the source's filesystem, None for a local one (read with plain `open`).

    `report(items, bytes, rejected)` is called with deltas as the file goes. A file that
    cannot be opened, is corrupt or truncated, or does not match its manifest entry comes back
    "bad" with the reason; the caller decides whether that stops the run.
    """
    splitter = Splitter(spec)
    for t, n in enumerate(task.next_shards):
        splitter.set_next_shard(t, n)
    result = FileResult(index=task.index, status="ok", spill=task.spill)
    md5 = hashlib.md5()
    progress = _Progress(splitter, report)
    splitter.begin_file(task.name)
    try:
        out = open(task.spill, "wb")  # noqa: SIM115 (closed by the `with` below)
    except OSError as e:
        return _disk(result, e)
    try:
        with out:
            try:
                handle = fs.open(task.path, "rb") if fs is not None else open(task.path, "rb")  # noqa: SIM115 (closed by the `with` below)
            except OSError as e:
                if (fault := credentials_fault(e)) is not None:
                    return _fatal(result, fault)
                return _bad(result, f"cannot open: {describe_os_error(e)}")
            with handle:
                while chunk := handle.read(CHUNK):
                    _exit_if_orphaned()
                    md5.update(chunk)
                    splitter.feed(chunk)
                    write_spill_records(out, splitter)
                    progress.tick(len(chunk))
                splitter.end_file()
                write_spill_records(out, splitter)
    except SpillWriteError as e:
        return _disk(result, e.error)
    except DecompressError as e:
        return _bad(result, str(e))
    except UnmatchedError as e:
        result.status, result.reason = "fatal", str(e)  # names file and line
        return result
    except OSError as e:
        # Closing the spill flushes its last bytes: that error names no file. Neither a
        # full disk nor a read-only one is ever the input's fault.
        if e.filename == task.spill or e.errno in _LOCAL_DISK_ERRNOS:
            return _disk(result, e)
        if (fault := credentials_fault(e)) is not None:
            return _fatal(result, fault)
        return _bad(result, f"cannot read: {describe_os_error(e)}")
    progress.flush()
    counts = splitter.counts()
    result.counts = counts
    result.shard_stats = splitter.shard_stats()
    result.bytes_in, result.bytes_uncompressed = splitter.file_bytes()
    result.next_shards = [
        (start + counts["targets"][t["name"]]["written"]) % t["shards"]
        for start, t in zip(task.next_shards, spec["targets"], strict=True)
    ]
    if task.md5_base64 is not None:
        got = base64.b64encode(md5.digest()).decode()
        if got != task.md5_base64:
            return _bad(
                result,
                f"MD5 {got} does not match the manifest's {task.md5_base64} "
                "(file changed or corrupt)",
            )
    if task.item_count is not None and counts["read"] != task.item_count:
        return _bad(result, f"{counts['read']} lines read, the manifest says {task.item_count}")
    return result


class _Progress:
    """Sends (items, bytes, rejected) deltas to the driver at most every PROGRESS_EVERY s."""

    def __init__(self, splitter: Splitter, report: Any) -> None:
        self.splitter = splitter
        self.report = report
        self.items = self.rejected = self.bytes = 0
        self.last = time.monotonic()

    def tick(self, nbytes: int) -> None:
        self.bytes += nbytes
        if time.monotonic() - self.last >= PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        counts = self.splitter.counts()
        self.report(counts["read"] - self.items, self.bytes, counts["rejected"] - self.rejected)
        self.items, self.rejected, self.bytes = counts["read"], counts["rejected"], 0


# S3 error codes that say the credentials themselves were refused: every other file would be
# refused alike, so the run stops instead of calling each file bad.
_REFUSED_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "TokenRefreshRequired",
}


_LOCAL_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def credentials_fault(e: BaseException) -> str | None:
    """One line when `e` (or what it was raised from) is the AWS environment's fault (missing,
    expired or refused credentials, no Region), not the input file's; else None."""
    missing = aws_setup_problem(e)
    if missing is not None:
        return missing
    for cause in cause_chain(e):
        code = error_code(cause)
        if code in _REFUSED_CREDENTIALS:
            return (
                f"AWS refused the credentials ({code}): renew or fix them, then run the "
                "same command with --resume"
            )
    return None


def _fatal(result: FileResult, reason: str) -> FileResult:
    Path(result.spill).unlink(missing_ok=True)
    result.status, result.reason = "fatal", reason
    return result


def _bad(result: FileResult, reason: str) -> FileResult:
    result.status, result.reason = "bad", reason
    return result


def _disk(result: FileResult, e: OSError) -> FileResult:
    Path(result.spill).unlink(missing_ok=True)  # frees what it held of the full disk
    result.status = "disk"
    result.reason = str(local_disk_error(e, f"{result.spill}: cannot write the spill file"))
    return result


def peak_rss() -> int:
    """This process's peak resident set size in bytes.

    Linux's VmHWM belongs to the process's own memory map. getrusage's ru_maxrss would not do:
    Linux carries it across fork and exec, so a process started from a big parent reports the
    parent's size (a split run from a 300 MB pytest said 322 MB)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _exit_if_orphaned() -> None:
    """A worker whose driver was killed stops at once: a resumed run will redo its file, and it
    must not keep reading (and billing S3 GETs) for nobody. (multiprocessing gives each child a
    sentinel of its parent, which becomes ready when the parent is gone, however it died.)"""
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os._exit(3)


def worker_main(
    worker: int,
    spec: CoreSpec,
    fs: AbstractFileSystem | None,
    conn: Connection,
) -> None:
    """Process entry point: take tasks from the driver's end of `conn` until told to end
    (None); send back ("progress", worker, deltas) and ("done", worker, FileResult).

    A pipe, not a multiprocessing.Queue: a queue's semaphores are named system objects that a
    killed driver leaves behind ("leaked semaphore objects"), and a pipe needs no feeder
    thread."""
    # Ctrl-C (and a SIGTERM sent to the group) reaches every process of the group; the driver
    # alone decides what happens (it stops the workers and keeps the checkpoint).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def send(message: tuple[str, int, Any]) -> None:
        try:
            conn.send(message)
        except OSError:  # the driver is gone (killed): a resumed run redoes this file
            os._exit(3)

    def report(items: int, nbytes: int, rejected: int) -> None:
        send(("progress", worker, (items, nbytes, rejected)))

    while True:
        if not conn.poll(1.0):
            _exit_if_orphaned()
            continue
        try:
            task = conn.recv()
        except EOFError:  # the driver is gone
            return
        if task is None:
            return
        try:
            result = split_file(task, spec, fs, report)
        except Exception as e:
            reason = credentials_fault(e) or f"{task.name}: {type(e).__name__}: {e}"
            result = FileResult(index=task.index, status="fatal", reason=reason)
        result.peak_rss = peak_rss()
        send(("done", worker, result))
