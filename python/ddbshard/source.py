"""Where split reads from: an export root (manifests) or a folder/glob of line files.

An export root is the folder AWS writes under `AWSDynamoDB/<export-id>/`, holding
`manifest-summary.json` and `manifest-files.json`; the files manifest lists every data file
with its item count and the base64 MD5 of the compressed object, and split checks both.
Any fsspec URL works (`s3://` through s3fs); local paths are read without fsspec
(`ddbshard.localfs`).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from ddbshard.exceptions import InputError
from ddbshard.localfs import Files, LocalFS, is_local_url
from ddbshard.storage import describe_os_error, url_to_fs

LINE_FILE_SUFFIXES = (".json", ".json.gz", ".json.zst", ".jsonl", ".jsonl.gz", ".jsonl.zst")


@dataclass(frozen=True)
class InputFile:
    """One data file to read."""

    path: str  # path within `Source.fs`
    name: str  # what reject records and messages call it (relative to the source)
    item_count: int | None = None  # from the manifest
    md5_base64: str | None = None  # from the manifest: base64 MD5 of the compressed object
    size: int | None = None


@dataclass(frozen=True)
class Source:
    fs: Files
    root: str
    files: tuple[InputFile, ...]
    item_count: int | None  # the manifest summary's itemCount, if any
    summary: dict[str, Any] | None
    missing: frozenset[str] = frozenset()  # names of listed files that are not there

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


def _is_export_root(fs: Files, path: str) -> bool:
    return bool(fs.exists(posixpath.join(path, "manifest-summary.json")))


def _find_export_root(fs: Files, path: str) -> str | None:
    """The export root at `path`, or below it at `AWSDynamoDB/<id>/` when there is one."""
    if _is_export_root(fs, path):
        return path
    base = posixpath.join(path, "AWSDynamoDB")
    if not fs.isdir(base):
        return None
    roots = [p for p in fs.ls(base, detail=False) if _is_export_root(fs, p)]
    if len(roots) > 1:
        listed = ", ".join(sorted(posixpath.basename(r) for r in roots))
        raise InputError(f"{path}: several exports under AWSDynamoDB/ ({listed}); name one")
    return roots[0] if roots else None


def resolve_source(url: str) -> Source:
    """Lists the files to read, from the manifests when `url` is an export.

    Files the manifest lists but that are not there are returned in `Source.missing`: whether
    that stops the run is the caller's decision (`--on-bad-file`). Any other failure to read
    the source (access denied, no such bucket) is one `InputError` naming the object.
    """
    try:
        return _resolve(url)
    except OSError as e:
        raise InputError(f"{url}: cannot read the source: {describe_os_error(e)}") from e


def _resolve(url: str) -> Source:
    fs: Files
    if is_local_url(url):
        fs = LocalFS()
        path = fs._strip_protocol(url)
    else:
        fs, path = url_to_fs(url)
    path = path.rstrip("/")
    if any(c in path for c in "*?["):
        # Names in reject records are relative to the folder the pattern starts from, not
        # to the pattern itself (which would give "../x.json").
        parts = path.split("/")
        fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
        root = "/".join(parts[:fixed]) or "/"
        return _line_files(fs, root, sorted(fs.glob(path)), url)
    if not fs.exists(path):
        raise InputError(f"{url}: no such file or folder")
    if not fs.isdir(path):
        return _line_files(fs, posixpath.dirname(path), [path], url)
    export_root = _find_export_root(fs, path)
    if export_root is not None:
        return _export(fs, export_root)
    found = [
        p
        for p in sorted(fs.find(path))
        if p.endswith(LINE_FILE_SUFFIXES) and not posixpath.basename(p).startswith("manifest-")
    ]
    return _line_files(fs, path, found, url)


def _line_files(fs: Files, root: str, paths: list[str], url: str) -> Source:
    if not paths:
        raise InputError(
            f"{url}: no export manifest and no line files ({', '.join(LINE_FILE_SUFFIXES)})"
        )
    files = tuple(
        InputFile(path=p, name=posixpath.relpath(p, root), size=_size(fs, p)) for p in paths
    )
    return Source(fs=fs, root=root, files=files, item_count=None, summary=None)


def _sizes(fs: Files, paths: list[str]) -> list[int | None]:
    """Sizes of many objects from one listing per folder (an export has thousands of data
    files: one HEAD each would take minutes); None for the ones that are not there."""
    listed: dict[str, int] = {}
    for folder in sorted({posixpath.dirname(p) for p in paths}):
        try:
            found = fs.find(folder, detail=True)
        except FileNotFoundError:
            continue
        listed.update({fs._strip_protocol(k): int(v["size"]) for k, v in found.items()})
    return [listed.get(fs._strip_protocol(p)) for p in paths]


def _size(fs: Files, path: str) -> int | None:
    """The object's size, or None when it does not exist (one HEAD on S3)."""
    try:
        return int(fs.info(path)["size"])
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{fs.unstrip_protocol(path)}: {describe_os_error(e)}") from e


def _read_json(fs: Files, path: str) -> Any:
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read manifest: {e}") from e


def _export(fs: Files, root: str) -> Source:
    summary = _read_json(fs, posixpath.join(root, "manifest-summary.json"))
    if summary.get("outputFormat", "DYNAMODB_JSON") != "DYNAMODB_JSON":
        raise InputError(
            f"{root}: export format {summary.get('outputFormat')} is not supported; "
            "export with DYNAMODB_JSON"
        )
    files_path = posixpath.join(root, "manifest-files.json")
    try:
        with fs.open(files_path, "rb") as f:
            lines = [ln for ln in f.read().decode().splitlines() if ln.strip()]
    except OSError as e:
        raise InputError(f"{files_path}: cannot read manifest: {e}") from e
    # dataFileS3Key is a key from the bucket root (prefix included); the part from
    # "AWSDynamoDB/" on is where the file sits relative to the export's parent folder.
    exports_dir = posixpath.dirname(root)
    files = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            key = entry["dataFileS3Key"]
        except (ValueError, KeyError) as e:
            raise InputError(f"{files_path}: line {n} is not a manifest entry: {e}") from e
        marker = key.rfind("AWSDynamoDB/")
        rel = key[marker + len("AWSDynamoDB/") :] if marker >= 0 else key
        path = posixpath.join(exports_dir, rel)
        files.append(
            InputFile(
                path=path,
                name=posixpath.relpath(path, root),
                item_count=int(entry["itemCount"]) if "itemCount" in entry else None,
                md5_base64=entry.get("md5Checksum"),
            )
        )
    sizes = _sizes(fs, [f.path for f in files])
    sized = tuple(
        InputFile(f.path, f.name, f.item_count, f.md5_base64, size)
        for f, size in zip(files, sizes, strict=True)
    )
    missing = frozenset(f.name for f, size in zip(files, sizes, strict=True) if size is None)
    count = summary.get("itemCount")
    return Source(
        fs=fs,
        root=root,
        files=sized,
        item_count=int(count) if count is not None else None,
        summary=summary,
        missing=missing,
    )
