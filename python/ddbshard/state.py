"""A run's resumable state: the checkpoint and the workers' spill files.

The checkpoint is one JSON file, replaced atomically (write, fsync, rename) after each input
file's output has been appended to the shards: it lists the finished files, the counts so far,
each output object's durable state (see sink.py), and where each worker's round-robin dealing
stands. Whatever happened after it (a file half-read, output half-appended) is redone on
`--resume`.

For a local destination the state lives in `<dest>/_state/`; for S3 in a local folder
(`--state-dir`, by default under ~/.cache/ddbshard/), because S3 multipart parts must be 5 MiB
and the bytes waiting to fill one live on local disk.

One run at a time per destination: the state folder holds a lock file, locked with flock(2)
for as long as the run lives and naming its pid, host and start. The kernel releases the lock
when its process dies however it dies, so a killed run's lock is simply taken over, and a
second run started while the first is alive is refused with one line naming the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from ddbshard.exceptions import LocalDiskError, ResumeError
from ddbshard.storage import is_s3

STATE_DIR_NAME = "_state"
VERSION = 1


LOCK_NAME = "lock"


def _cache_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ddbshard" / "state"


def default_state_dir(dest_url: str) -> Path:
    if not is_s3(dest_url):
        return Path(dest_url.removeprefix("file://")) / STATE_DIR_NAME
    digest = hashlib.sha256(dest_url.rstrip("/").encode()).hexdigest()[:16]
    return _cache_root() / digest


def local_disk_error(e: OSError, what: str) -> LocalDiskError:
    """One line for a failed write to this machine's disk, saying what to do about it."""
    reason = e.strerror or str(e)
    advice = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "fix it"
    return LocalDiskError(
        f"{what}: {reason}; {advice}, then run the same command with --resume "
        "(the checkpoint is kept)"
    )


def sweep_stale_state_dirs() -> None:
    """Removes folders under ~/.cache/ddbshard/state/ that killed runs left with no checkpoint
    anywhere in them (nothing to resume from) and no live run holding a lock in them. Only
    folders untouched for a minute: a run starting now makes its folder before it locks it."""
    root = _cache_root()
    if not root.is_dir():
        return
    for d in root.iterdir():
        try:
            if not d.is_dir() or time.time() - d.stat().st_mtime < 60:
                continue
            if any(d.rglob("checkpoint.json")):
                continue
            locks = [_try_lock(p) for p in d.rglob(LOCK_NAME)]
            if all(fd is not None for fd in locks):
                shutil.rmtree(d, ignore_errors=True)
            for fd in locks:
                if fd is not None:
                    os.close(fd)
        except OSError:
            continue  # another run's folder, changing under us: leave it


# The lock fds this process holds. A forked worker gets copies of them, and a lock stays held
# while any copy is open: a worker orphaned by a killed driver would hold the destination until
# it noticed. So a forked child closes its copies at once (closing a copy never releases the
# parent's lock; only the last one does).
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


def _dest_lock_path(dest_key: str) -> Path:
    """This machine's lock file for one destination, in the cache folder every run on this
    machine shares (XDG_CACHE_HOME, else ~/.cache)."""
    folder = _cache_root().parent / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LocalDiskError(
            f"{folder}: cannot create the folder of destination locks: {e.strerror or e} "
            "(set XDG_CACHE_HOME to a writable folder)"
        ) from e
    return folder / (hashlib.sha256(dest_key.encode()).hexdigest()[:24] + ".lock")


def _take(path: Path, dest: str) -> int:
    """An fd holding the lock at `path`, written with who holds it; or ResumeError naming
    the run that holds it."""
    try:
        fd = _try_lock(path)
    except OSError as e:
        raise LocalDiskError(f"{path}: cannot create the run's lock: {e.strerror or e}") from e
    if fd is None:
        try:
            holder = json.loads(path.read_bytes())
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "another process"
        raise ResumeError(
            f"{dest}: another split is running on this destination ({who}); wait for it "
            f"to end or stop it (its lock: {path})"
        )
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
    _HELD.add(fd)
    return fd


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None if another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A run that just finished unlinks its lock file: a lock taken on that unlinked file
        # would guard nothing, so it must still be the file at `path`.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return _try_lock(path)
    except BlockingIOError:
        os.close(fd)
        return None
    except FileNotFoundError:
        os.close(fd)
        return _try_lock(path)
    return fd


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoint_path = path / "checkpoint.json"
        self.spill_dir = path / "spill"
        self.lock_path = path / LOCK_NAME
        self._lock_fd: int | None = None
        self._dest_lock: Path | None = None
        self._dest_lock_fd: int | None = None

    def lock(self, dest: str, dest_key: str) -> None:
        """Takes the destination for this run, or refuses naming the run that holds it.

        Two locks: the state folder's, and one per destination (`dest_key`: the dest, and the
        node of an array job) in this machine's cache, so that two runs on one dest are refused
        even when their --state-dir differ."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LocalDiskError(
                f"{self.path}: cannot create the run's state folder: {e.strerror or e}"
            ) from e
        self._dest_lock = _dest_lock_path(dest_key)
        self._dest_lock_fd = _take(self._dest_lock, dest)
        try:
            self._lock_fd = _take(self.lock_path, dest)
        except BaseException:
            self._release_dest_lock()
            raise

    def _release_dest_lock(self) -> None:
        if self._dest_lock_fd is not None and self._dest_lock is not None:
            # Unlinked while held: a run waiting on it sees another file and tries again.
            with contextlib.suppress(OSError):
                self._dest_lock.unlink()
            _HELD.discard(self._dest_lock_fd)
            os.close(self._dest_lock_fd)
            self._dest_lock_fd = None

    def unlock(self) -> None:
        """Lets the destination go. A state folder with no checkpoint (the run was refused, or
        failed before it began) holds nothing to resume from, and goes with the lock."""
        self._release_dest_lock()
        if self._lock_fd is None:
            return
        if not self.checkpoint_path.exists():
            self.remove()
            return
        _HELD.discard(self._lock_fd)
        os.close(self._lock_fd)
        self._lock_fd = None

    def exists(self) -> bool:
        return self.checkpoint_path.exists()

    def load(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            return None
        return data

    def save(self, checkpoint: dict[str, Any]) -> None:
        tmp = self.checkpoint_path.with_name("checkpoint.json.tmp")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(json.dumps(checkpoint, separators=(",", ":")).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.checkpoint_path)
            dir_fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself must survive a power cut
            finally:
                os.close(dir_fd)
        except OSError as e:
            # The previous checkpoint is intact: the new one never replaced it.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise local_disk_error(e, f"{self.checkpoint_path}: cannot save the checkpoint") from e

    def fresh_spill_dir(self) -> Path:
        """An empty spill folder (spills of a killed run are never reused)."""
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        try:
            self.spill_dir.mkdir(parents=True)
        except OSError as e:
            raise local_disk_error(e, f"{self.spill_dir}: cannot create the spill folder") from e
        return self.spill_dir

    def clear(self) -> None:
        """Removes the checkpoint, spills and tails of an earlier run, keeping this run's lock."""
        if not self.path.is_dir():
            return
        for p in self.path.iterdir():
            if p.name == LOCK_NAME:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def remove(self) -> None:
        """The run is finished: its state goes, the lock last."""
        self.clear()
        self.lock_path.unlink(missing_ok=True)
        if self._lock_fd is not None:
            _HELD.discard(self._lock_fd)
            os.close(self._lock_fd)
            self._lock_fd = None
        self._release_dest_lock()
        with contextlib.suppress(OSError):
            self.path.rmdir()
        if self.path.parent.name == STATE_DIR_NAME:  # a node's state: <dest>/_state/node-I
            with contextlib.suppress(OSError):  # other nodes may still be running
                self.path.parent.rmdir()


def fingerprint(
    spec: dict[str, Any],
    files: list[tuple[str, str | None, int | None]],
    node: list[int] | None = None,
) -> str:
    """What must not change between a run and its resume: the routing spec (targets,
    expressions, shard counts, compression), the list of input files, and which node of an
    array job this is."""
    blob = json.dumps(
        {"spec": spec, "files": files, "node": node}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()
