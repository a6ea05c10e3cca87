"""Where split writes: shard files, manifests, rejects and the summary under `dest`.

Shards are opened lazily, on their first bytes, so a shard that receives no item leaves no
object behind (ImportTable fails on empty objects under its prefix in some implementations,
and an empty shard is useless anyway). Each shard's MD5 and size are taken from the bytes as
they are written, which is what ImportTable and `aws s3` will see.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem

from ddbshard.exceptions import InputError


@dataclass
class ShardFile:
    key: str  # relative to the target folder, e.g. "data/part-00000.json.zst"
    handle: IO[bytes]
    md5: Any = field(default_factory=hashlib.md5)
    size: int = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.md5.update(data)
        self.size += len(data)


class Dest:
    """The output folder (local or s3://)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs: AbstractFileSystem
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self._rejects: IO[bytes] | None = None

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def existing_entries(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False)]

    def clear(self, names: list[str]) -> None:
        """Removes earlier output (only the entries named)."""
        for name in names:
            p = self.path(name)
            if self.fs.exists(p):
                self.fs.rm(p, recursive=True)

    def makedirs(self, *parts: str) -> None:
        self.fs.makedirs(self.path(*parts), exist_ok=True)

    def open_shard(self, target: str, key: str) -> ShardFile:
        self.makedirs(target, posixpath.dirname(key))
        try:
            handle = self.fs.open(self.path(target, key), "wb")
        except OSError as e:
            raise InputError(f"{self.path(target, key)}: cannot write: {e}") from e
        return ShardFile(key=key, handle=handle)

    def write_json(self, rel: str, obj: Any) -> None:
        parent = posixpath.dirname(rel)
        if parent:
            self.makedirs(parent)
        with self.fs.open(self.path(rel), "wb") as f:
            f.write(json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n")

    def append_rejects(self, records: bytes) -> None:
        if not records:
            return
        if self._rejects is None:
            self.makedirs("_rejects")
            self._rejects = self.fs.open(self.path("_rejects", "rejects.jsonl"), "wb")
        self._rejects.write(records)

    def close(self) -> None:
        if self._rejects is not None:
            self._rejects.close()
            self._rejects = None
