"""A run's resumable state: the checkpoint and the workers' spill files.

The checkpoint is one JSON file, replaced atomically (write, fsync, rename) after each input
file's output has been appended to the shards: it lists the finished files, the counts so far,
each output object's durable state (see sink.py), and where each worker's round-robin dealing
stands. Whatever happened after it (a file half-read, output half-appended) is redone on
`--resume`.

For a local destination the state lives in `<dest>/_state/`; for S3 in a local folder
(`--state-dir`, by default under ~/.cache/ddbshard/), because S3 multipart parts must be 5 MiB
and the bytes waiting to fill one live on local disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ddbshard.storage import is_s3

STATE_DIR_NAME = "_state"
VERSION = 1


def default_state_dir(dest_url: str) -> Path:
    if not is_s3(dest_url):
        return Path(dest_url.removeprefix("file://")) / STATE_DIR_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(dest_url.rstrip("/").encode()).hexdigest()[:16]
    return cache / "ddbshard" / "state" / digest


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoint_path = path / "checkpoint.json"
        self.spill_dir = path / "spill"

    def exists(self) -> bool:
        return self.checkpoint_path.exists()

    def load(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            return None
        return data

    def save(self, checkpoint: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name("checkpoint.json.tmp")
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

    def fresh_spill_dir(self) -> Path:
        """An empty spill folder (spills of a killed run are never reused)."""
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        self.spill_dir.mkdir(parents=True)
        return self.spill_dir

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
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
