"""The local disk, through the few filesystem calls `source` makes, without fsspec.

A split reading local files needs only to list them, look at their sizes and modification
times, read the first bytes of some and open them.
Importing fsspec for that costs a tenth of a CPU-second (it brings asyncio, ssl and entry-point
scanning with it), paid by every run; on S3 fsspec (s3fs) is what reads, and this is not used.

Paths are absolute, spelled as fsspec's LocalFileSystem spells them (POSIX), so names
derived from them (reject records, manifests) are the same whichever of the two listed them.
"""

from __future__ import annotations

import glob
import os
import stat
from typing import IO, Any, Protocol


class Files(Protocol):
    """What `source` and its readers call on a filesystem: fsspec's or `LocalFS`."""

    def exists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def ls(self, path: str, detail: bool = ...) -> Any: ...
    def glob(self, pattern: str) -> Any: ...
    def find(self, path: str, detail: bool = ...) -> Any: ...
    def info(self, path: str) -> dict[str, Any]: ...
    def cat_file(self, path: str, start: int | None = ..., end: int | None = ...) -> Any: ...
    def open(self, path: str, mode: str = ...) -> Any: ...
    def unstrip_protocol(self, path: str) -> str: ...
    def _strip_protocol(self, path: str) -> str: ...


def is_local_url(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class LocalFS:
    """fsspec's calls, as its LocalFileSystem answers them, for the local disk."""

    @staticmethod
    def _strip_protocol(path: str) -> str:
        """An absolute path, as fsspec makes it: prefixed with the current folder when
        relative, not otherwise normalised (`a/../b` stays), no trailing `/`."""
        path = path.removeprefix("file://")
        if path.startswith("~"):
            path = os.path.expanduser(path)
        elif not path.startswith("/"):
            path = path.removeprefix("./") if path != "." else ""
            path = f"{os.getcwd()}/{path}"
        return path.rstrip("/") or "/"

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def ls(self, path: str, detail: bool = False) -> list[str]:
        if detail:
            raise NotImplementedError("LocalFS.ls lists names only")
        with os.scandir(path) as entries:
            return sorted(self._strip_protocol(e.path) for e in entries)

    def glob(self, pattern: str) -> list[str]:
        # fsspec matches dot files as any others, and `**` at any depth.
        found = glob.glob(pattern, recursive=True, include_hidden=True)
        return sorted(self._strip_protocol(p) for p in found)

    def find(self, path: str, detail: bool = False) -> list[str] | dict[str, dict[str, Any]]:
        """Every file under `path` (not folders), or `path` itself when it is a file; with
        `detail`, each with its size. A missing `path` has nothing under it."""
        if os.path.isfile(path):
            files = [self._strip_protocol(path)]
        else:
            files = sorted(
                self._strip_protocol(os.path.join(folder, name))
                for folder, _, names in os.walk(path)
                for name in names
            )
        if not detail:
            return files
        return {f: self.info(f) for f in files}

    def info(self, path: str) -> dict[str, Any]:
        """Name, size and type as fsspec gives them; `mtime` as fsspec's (float seconds) and
        `mtime_ns`, exact, which `source` takes to tell a file rewritten since it was read."""
        st = os.stat(path)
        kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
        return {
            "name": self._strip_protocol(path),
            "size": st.st_size,
            "type": kind,
            "mtime": st.st_mtime,
            "mtime_ns": st.st_mtime_ns,
        }

    def cat_file(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes `start` to `end` (end excluded) of the file, as fsspec's cat_file."""
        with open(path, "rb") as f:
            f.seek(start or 0)
            return f.read() if end is None else f.read(max(0, end - (start or 0)))

    def open(self, path: str, mode: str = "rb") -> IO[Any]:
        return open(path, mode)

    def unstrip_protocol(self, path: str) -> str:
        return f"file://{path}"
