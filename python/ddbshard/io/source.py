"""Where split reads from: an export root (manifests) or a folder/glob of line files.

An export root is the folder AWS writes under `AWSDynamoDB/<export-id>/`, holding
`manifest-summary.json` and `manifest-files.json`; the files manifest lists every data file
with its item count and the base64 MD5 of the compressed object, and split checks both.
Any fsspec URL works (`s3://` through s3fs); local paths are read without fsspec
(`ddbshard.io.localfs`).

Without a manifest, the data files of a folder are known by their bytes, as their compression
is: export lines (plain, gzip, zstd) whatever they are called, such as the `data/<uuid>.gz`
files moto's ExportTableToPointInTime writes. A glob or a single file is taken as it is.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ddbshard._core import SNIFF_LEN, sniff_compression
from ddbshard.exceptions import InputError
from ddbshard.io.localfs import Files, LocalFS, is_local_url
from ddbshard.io.storage import describe_os_error, url_to_fs

# Names taken for data in a folder without reading them: export lines (AWS writes .json.gz)
# and any gzip or zstd file (moto writes data/<uuid>.gz). Other names are read for their first
# bytes (see _looks_like_data).
DATA_SUFFIXES = (".json", ".jsonl", ".gz", ".zst")
# Bytes read from a file of another name: its magic number, or the `{` of its first line after
# a few blank lines.
HEAD_BYTES = 512
_JSON_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class InputFile:
    """One data file to read."""

    path: str  # path within `Source.fs`
    name: str  # what reject records and messages call it (relative to the source)
    item_count: int | None = None  # from the manifest
    md5_base64: str | None = None  # from the manifest: base64 MD5 of the compressed object
    size: int | None = None
    # From the listing: size and modification time (local) or size and ETag (S3), which change
    # when the file's bytes do.
    token: str | None = None

    @property
    def version(self) -> str | None:
        """What identifies the bytes of this file, so that `--resume` can tell a file that
        changed since the interrupted run: the manifest's MD5 when there is one (every file
        read is checked against it, and the output follows the manifest), else the listing's
        token."""
        return self.md5_base64 if self.md5_base64 is not None else self.token


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


def _glob_root(path: str) -> str | None:
    """The folder a glob pattern starts from (its parts before the first wildcard), or None
    when `path` is no pattern."""
    if not any(c in path for c in "*?["):
        return None
    parts = path.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    return "/".join(parts[:fixed]) or "/"


def lists_under(source: str, dest: str) -> str | None:
    """The folder of a local `source` that would list files written under the local `dest`,
    or None when it would not: the split would read its own output (and `--overwrite` would
    delete what it reads). A plain folder lists everything below it, a glob what its pattern
    reaches from its fixed folder; an export root only the files its manifest names, so a dest
    inside one is safe. A source that is not there lists nothing (reading it fails before any
    output is touched)."""
    fs = LocalFS()
    src = posixpath.normpath(fs._strip_protocol(source))
    out = posixpath.normpath(fs._strip_protocol(dest))
    root = _glob_root(src)
    folder = root if root is not None else src
    if not fs.isdir(folder) or (out != folder and not out.startswith(folder.rstrip("/") + "/")):
        return None
    if root is not None:
        # One pattern part without `**` matches only the fixed folder's own files: dest's are
        # two levels below dest (T/manifest.json) unless dest is that folder (_summary.json).
        pattern = src[len(root) :].strip("/")
        return folder if out == folder or "**" in pattern or "/" in pattern else None
    return folder if _find_export_root(fs, src) is None else None


def _resolve(url: str) -> Source:
    fs: Files
    if is_local_url(url):
        fs = LocalFS()
        path = fs._strip_protocol(url)
    else:
        fs, path = url_to_fs(url)
    path = path.rstrip("/")
    root = _glob_root(path)
    if root is not None:
        # Names in reject records are relative to the folder the pattern starts from, not
        # to the pattern itself (which would give "../x.json"). What a pattern matches is
        # read whatever its name, folders aside.
        matched = [(p, _info(fs, p)) for p in sorted(fs.glob(path))]
        files = [(p, info) for p, info in matched if info.get("type") != "directory"]
        return _data_files(fs, root, files, url)
    if not fs.exists(path):
        raise InputError(f"{url}: no such file or folder")
    if not fs.isdir(path):
        return _data_files(fs, posixpath.dirname(path), [(path, _info(fs, path))], url)
    export_root = _find_export_root(fs, path)
    if export_root is not None:
        return _export(fs, export_root)
    listed = sorted((fs._strip_protocol(p), info) for p, info in _find(fs, path).items())
    files = [
        (p, info)
        for p, info in listed
        if not _never_data(posixpath.relpath(p, path)) and _looks_like_data(fs, p, info)
    ]
    return _data_files(fs, path, files, url)


def _never_data(rel: str) -> bool:
    """Files of a source folder that are not read whatever they hold: hidden ones and those in
    hidden folders ('.'), markers and work folders ('_started', '_SUCCESS', '_temporary/',
    ddbshard's own '_state/' and '_rejects/'), export manifests and checksum files."""
    parts = rel.split("/")
    name = parts[-1]
    return (
        any(part.startswith((".", "_")) for part in parts)
        or name.startswith("manifest-")
        or name.endswith((".md5", ".checksum"))
    )


def _looks_like_data(fs: Files, path: str, info: Mapping[str, Any]) -> bool:
    """A data file by its name (`DATA_SUFFIXES`) or, for any other name, by its first bytes:
    a compressed stream (formats the reader refuses included, so that they are reported by
    name rather than skipped) or a line starting `{`. An empty file holds no item."""
    if path.endswith(DATA_SUFFIXES):
        return True
    if not info.get("size"):
        return False
    head = _head(fs, path, HEAD_BYTES)
    if sniff_compression(head[:SNIFF_LEN]) != "none":
        return True
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(_JSON_WHITESPACE).startswith(b"{")


def _head(fs: Files, path: str, n: int) -> bytes:
    try:
        data: bytes = fs.cat_file(path, start=0, end=n)
    except OSError as e:
        raise InputError(f"{fs.unstrip_protocol(path)}: {describe_os_error(e)}") from e
    return data


def _data_files(
    fs: Files, root: str, found: list[tuple[str, Mapping[str, Any]]], url: str
) -> Source:
    if not found:
        raise InputError(
            f"{url}: no export manifest and no data files (export lines, plain, gzip or zstd; "
            "names starting with '.' or '_', manifests and checksums are not read)"
        )
    files = tuple(
        InputFile(
            path=p,
            name=posixpath.relpath(p, root),
            size=int(info["size"]),
            token=_token(info),
        )
        for p, info in found
    )
    return Source(fs=fs, root=root, files=files, item_count=None, summary=None)


def _token(info: Mapping[str, Any]) -> str | None:
    """What changes when a file's bytes do, from its listing: size and ETag on S3 (s3fs lists
    it with every object), size and modification time on a local disk."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"{info['size']}:{str(etag).strip(chr(34))}"
    for key in ("mtime_ns", "mtime"):  # LocalFS has the first, fsspec's LocalFileSystem the second
        if info.get(key) is not None:
            return f"{info['size']}:{info[key]}"
    return None


def _listing(fs: Files, paths: list[str]) -> list[Mapping[str, Any] | None]:
    """The listing entries (size, ETag) of many objects from one listing per folder (an export
    has thousands of data files: one HEAD each would take minutes); None for the ones that are
    not there."""
    listed: dict[str, Mapping[str, Any]] = {}
    for folder in sorted({posixpath.dirname(p) for p in paths}):
        try:
            found = _find(fs, folder)
        except FileNotFoundError:
            continue
        listed.update({fs._strip_protocol(k): v for k, v in found.items()})
    return [listed.get(fs._strip_protocol(p)) for p in paths]


def _find(fs: Files, path: str) -> dict[str, Mapping[str, Any]]:
    """Every file below `path` with its listing entry (size, and ETag or mtime)."""
    found: dict[str, Mapping[str, Any]] = fs.find(path, detail=True)
    return found


def _info(fs: Files, path: str) -> Mapping[str, Any]:
    """The object's listing entry (one HEAD on S3)."""
    try:
        return fs.info(path)
    except OSError as e:
        raise InputError(f"{fs.unstrip_protocol(path)}: {describe_os_error(e)}") from e


def _read_json(fs: Files, path: str) -> Any:
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read manifest: {e}") from e


def _count(value: Any, where: str) -> int:
    """An `itemCount`: a whole number of items. int() would take "12", 12.5 and true (and
    raise a bare TypeError on null), each a manifest no export writes."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where}: itemCount {json.dumps(value)} is not a count of items")
    return value


def _manifest_entry(line: str, where: str) -> tuple[dict[str, Any], str]:
    """One line of manifest-files.json, of the shape AWS writes (AWS-FORMATS.md §1.4), and
    where its data file sits relative to the folder holding the exports."""
    try:
        entry = json.loads(line)
    except ValueError as e:
        raise InputError(f"{where} is not a manifest entry: {e}") from e
    if not isinstance(entry, dict):
        raise InputError(f"{where} is not a manifest entry (a JSON object)")
    if not isinstance(entry.get("dataFileS3Key"), str):
        raise InputError(f"{where}: dataFileS3Key is missing or not a string")
    if not isinstance(entry.get("md5Checksum", ""), str):
        raise InputError(f"{where}: md5Checksum is not a string")
    key = entry["dataFileS3Key"]
    rel = _relative_key(key)
    if rel is None:
        shown = json.dumps(key if len(key) <= 200 else key[:200] + "...")
        raise InputError(
            f"{where}: dataFileS3Key {shown} does not name a file in the export "
            "(an empty, '.' or '..' part, or an absolute path)"
        )
    return entry, rel


def _relative_key(key: str) -> str | None:
    """Where a `dataFileS3Key` sits relative to the folder holding the exports: its part from
    "AWSDynamoDB/" on (the key is from the bucket root, prefix included), or all of it. None
    when it could lead anywhere else: an absolute path, a `..` (read from a disk, it would
    leave the export), or a `.` or empty part, which no export writes and S3 would take as
    another key than the path it normalises to."""
    marker = key.rfind("AWSDynamoDB/")
    rel = key[marker + len("AWSDynamoDB/") :] if marker >= 0 else key
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    return rel


def _export(fs: Files, root: str) -> Source:
    summary_path = posixpath.join(root, "manifest-summary.json")
    summary = _read_json(fs, summary_path)
    if not isinstance(summary, dict):
        raise InputError(f"{summary_path}: not a manifest summary (a JSON object)")
    if summary.get("outputFormat", "DYNAMODB_JSON") != "DYNAMODB_JSON":
        raise InputError(
            f"{root}: export format {summary.get('outputFormat')} is not supported; "
            "export with DYNAMODB_JSON"
        )
    count = summary.get("itemCount")
    total = _count(count, summary_path) if count is not None else None
    files_path = posixpath.join(root, "manifest-files.json")
    try:
        with fs.open(files_path, "rb") as f:
            lines = f.read().decode().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{files_path}: cannot read manifest: {e}") from e
    # dataFileS3Key is a key from the bucket root (prefix included); the part from
    # "AWSDynamoDB/" on is where the file sits relative to the export's parent folder.
    exports_dir = posixpath.dirname(root)
    files = []
    first_line: dict[str, int] = {}  # path -> the manifest line that listed it
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry, rel = _manifest_entry(line, f"{files_path}: line {n}")
        path = posixpath.join(exports_dir, rel)
        name = posixpath.relpath(path, root)
        if path in first_line:
            # Read twice, its items would be written twice.
            raise InputError(
                f"{files_path}: {name} is listed twice (lines {first_line[path]} and {n})"
            )
        first_line[path] = n
        files.append(
            InputFile(
                path=path,
                name=name,
                item_count=(
                    _count(entry["itemCount"], f"{files_path}: line {n}")
                    if "itemCount" in entry
                    else None
                ),
                md5_base64=entry.get("md5Checksum"),
            )
        )
    listing = _listing(fs, [f.path for f in files])
    sized = tuple(
        InputFile(
            f.path,
            f.name,
            f.item_count,
            f.md5_base64,
            int(info["size"]) if info is not None else None,
            _token(info) if info is not None else None,
        )
        for f, info in zip(files, listing, strict=True)
    )
    missing = frozenset(f.name for f, info in zip(files, listing, strict=True) if info is None)
    return Source(
        fs=fs,
        root=root,
        files=sized,
        item_count=total,
        summary=summary,
        missing=missing,
    )
