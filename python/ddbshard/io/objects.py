"""The append-only output objects split writes (shards, rejects), local or S3, and how each
survives a crash at any instant.

The driver appends the output of each finished input file, makes it durable (`sync()`), then
records every object's state in the checkpoint; at the end it completes each object
(`finish()`) and records that too. `--resume` reopens each object at its recorded state:

- appended after the checkpoint: dropped (the input files are read again);
- complete: never touched again (its recorded MD5 and size go to the manifest);
- not in the checkpoint at all: it belongs to an input file that will be read again, so the
  dest's copy is removed or overwritten, never appended to.

Compressed frames (zstd) and members (gzip) concatenate, so a resumed object is still one
valid stream.

Local: a file, truncated back to its recorded length on resume (refused, never padded, if it
is shorter: someone changed the destination). Complete once closed and hashed.

S3: a single PUT at the end for an object under one part; above that a multipart upload fed
from local *segment* files, one per part (`<tail>.<part number>`). A segment is removed only
after a checkpoint no longer needs it, so whatever a checkpoint records (the parts uploaded and
the length of the next part's segment) is still on disk when a resume needs it. A part
uploaded after the last checkpoint is uploaded again under the same number (S3 keeps the last
upload of a part number, and completion lists the ETags the checkpoint knows). Finishing a
multipart object first records its final part list ("completing"), so a resume that finds the
upload already completed (NoSuchUpload) checks the object's size and part count and takes it
as done instead of failing on it.

Objects are created on their first bytes, so a shard that receives no item leaves no object
behind (ImportTable fails on an empty object under its prefix). MD5 and size are taken from
the bytes as written; an object continued after a resume is read back once for its MD5,
since a hash's running state cannot be saved.

The MD5s are computed in batches: `append` keeps the bytes, and `hash_appends` hashes those of
many objects in one call, their streams side by side in SIMD lanes (`_core.md5_update_many`).
One stream at a time (hashlib) cost the driver about 0.2 CPU seconds per million items, taken
from the workers on a machine whose cores they fill; side by side it costs a quarter of that.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ddbshard import crashpoints
from ddbshard._core import Md5, md5_update_many
from ddbshard.exceptions import InputError, ResumeError
from ddbshard.io.storage import error_code, s3_error


class S3Dest(Protocol):
    """What an S3 object needs of its destination (sink.S3Dest): the client, where, and the
    arguments every request carries."""

    client: Any
    bucket: str
    put_args: dict[str, str]  # SSE and the expected owner, on the requests that write
    owner_args: dict[str, str]  # the expected owner, on every request

    def object_key(self, key: str) -> str: ...


# S3 multipart part size (minimum 5 MiB for all parts but the last). DDBSHARD_PART_SIZE, read
# only by tests, lowers it to S3's minimum so that crash tests reach multipart uploads with
# less data.
PART_SIZE = max(5 << 20, int(os.environ.get("DDBSHARD_PART_SIZE") or 8 << 20))
_HASH_CHUNK = 8 << 20


class OutputObject(Protocol):
    key: str  # relative to dest, e.g. "Posts/data/part-00000.json.zst"
    hasher: Md5 | None  # the MD5 of the bytes before `unhashed`; None: read back at finish
    unhashed: list[bytes | memoryview]  # appended, not yet in `hasher` (see hash_appends)
    done: dict[str, Any] | None  # {"md5", "size"} once complete

    @property
    def size(self) -> int: ...

    def append(self, data: bytes | memoryview) -> None:
        """Appends bytes; their MD5 waits for the next hash_appends (or finish)."""
        ...

    def sync(self) -> dict[str, Any]:
        """Makes everything appended so far durable; returns the state to resume from."""
        ...

    def checkpointed(self) -> None:
        """The state `sync` returned is now in the checkpoint: drop what only an older
        checkpoint needed."""
        ...

    def finish(self) -> dict[str, Any]:
        """Completes the object on its dest; returns the state recording that: {"md5" (hex),
        "size", ...}. Between this and the checkpoint that records it, a resume finishes
        the object again, which must come to the same bytes."""
        ...

    def finish_prepare(self) -> dict[str, Any] | None:
        """What must be in the checkpoint before `finish` (S3: the final part list), if any."""
        ...

    def abandon(self) -> None:
        """Releases resources without finishing (the state stays resumable)."""
        ...

    def verify(self) -> None:
        """On resume: refuses (ResumeError) an object the checkpoint records as complete that
        is no longer what was completed (removed or changed since)."""
        ...


def _changed(where: str, what: str) -> ResumeError:
    return ResumeError(
        f"{where}: cannot resume: {what} since the interrupted run (the destination was "
        "changed); start over with --overwrite"
    )


def hash_appends(objects: Iterable[OutputObject]) -> None:
    """Brings each object's MD5 up to all the bytes appended to it, in one pass over them all."""
    hashers: list[Md5] = []
    chunks: list[list[bytes | memoryview]] = []
    for o in objects:
        if o.unhashed and o.hasher is not None:
            hashers.append(o.hasher)
            chunks.append(o.unhashed)
        o.unhashed = []
    if hashers:
        md5_update_many(hashers, chunks)


def _hash_file(path: Path, hasher: Md5 | None = None) -> Md5:
    """The running MD5 of a file's bytes (after `hasher`'s), to go on appending to."""
    hasher = hasher or Md5()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher


def _cut_back(path: Path, size: int, what: str) -> None:
    """Truncates `path` to the `size` bytes a checkpoint recorded. A shorter (or missing) file
    lost bytes the checkpoint counts on: refuse rather than pad it with zeros."""
    try:
        have = path.stat().st_size
    except FileNotFoundError:
        have = -1
    if have < size:
        found = "is missing" if have < 0 else f"has {have} bytes"
        raise ResumeError(
            f"{path}: cannot resume: {what} {found}, the checkpoint recorded {size} (it was "
            "changed or removed since the interrupted run); start over with --overwrite"
        )
    if have > size:
        with open(path, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())


class LocalObject:
    def __init__(self, path: Path, key: str, state: dict[str, Any] | None) -> None:
        self.key = key
        self.path = path
        self._size = 0
        self.hasher: Md5 | None = Md5()
        self.unhashed: list[bytes | memoryview] = []
        self.done: dict[str, Any] | None = None
        self._fh: Any = None
        self._fresh = state is None  # opened first by this run: its file may hold leftovers
        if state is not None:
            self._size = int(state["size"])
            self.done = state.get("done")
            # Bytes past the checkpoint belong to input files that will be read again.
            _cut_back(path, self._size, "the shard")
            # The bytes kept must be the ones the checkpoint counted: their MD5 is recorded.
            self.hasher = _hash_file(path)
            want = self.done["md5"] if self.done is not None else state.get("md5")
            if want is not None and self.hasher.hexdigest() != want:
                raise _changed(str(path), "its bytes are not the ones written")

    @property
    def size(self) -> int:
        return self._size

    def append(self, data: bytes | memoryview) -> None:
        if self._fh is None:
            if self.done is not None:
                raise AssertionError(f"{self.key}: appended to after it was finished")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A file this run did not create (a killed run's, which no checkpoint knew of)
            # starts over: its bytes will be written again.
            mode = "wb" if self._fresh else "ab"
            self._fh = open(self.path, mode)  # noqa: SIM115 (kept open across appends)
            self._fresh = False
        self._fh.write(data)
        self.unhashed.append(data)
        self._size += len(data)

    def sync(self) -> dict[str, Any]:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        state: dict[str, Any] = {"size": self._size}
        if self.hasher is not None and not self.unhashed:
            state["md5"] = self.hasher.hexdigest()  # of the bytes so far, checked on resume
        if self.done is not None:
            state["done"] = self.done
        return state

    def checkpointed(self) -> None:
        return None

    def verify(self) -> None:
        return None  # checked when opened: the file is hashed then anyway

    def finish_prepare(self) -> dict[str, Any] | None:
        return None

    def finish(self) -> dict[str, Any]:
        if self.done is None:
            self.abandon()
            hash_appends([self])
            assert self.hasher is not None  # a local object is hashed as it is written
            crashpoints.reached("object_written")
            self.done = {"md5": self.hasher.hexdigest(), "size": self._size}
        return {"size": self._size, "done": self.done}

    def abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class S3Object:
    def __init__(
        self,
        dest: S3Dest,
        key: str,
        tail: Path,
        state: dict[str, Any] | None,
    ) -> None:
        self.key = key
        self.dest = dest
        self.bucket, self.object_key = dest.bucket, dest.object_key(key)
        self.tail = tail  # segments are <tail>.<part number>
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []  # {"PartNumber", "ETag", "Size"}
        self.hasher: Md5 | None = Md5()
        self.unhashed: list[bytes | memoryview] = []
        self.done: dict[str, Any] | None = None
        self.completing: list[dict[str, Any]] | None = None  # the final part list, once known
        self._size = 0
        self._fh: Any = None
        self._kept = 1  # segments below this part number are no longer needed by a checkpoint
        self.tail.parent.mkdir(parents=True, exist_ok=True)
        if state is None:
            self._remove_segments(from_part=1)
            return
        self.done = state.get("done")
        self.upload_id = state.get("upload_id")
        self.parts = list(state.get("parts", []))
        self.completing = state.get("completing")
        tail_size = int(state.get("tail", 0))
        self._size = sum(int(p["Size"]) for p in self.parts) + tail_size
        if self.done is not None:
            self._size = int(self.done["size"])
            return
        current = len(self.parts) + 1
        self._kept = current
        # The checkpoint needs only the current part's segment, up to its recorded length;
        # earlier segments were uploaded, later ones hold bytes appended after it.
        self._remove_segments(from_part=1, below=current)
        self._remove_segments(from_part=current + (1 if tail_size else 0))
        if tail_size:
            _cut_back(self._segment(current), tail_size, "the part waiting to be uploaded")
        if self.parts:
            self.hasher = None  # uploaded parts cannot be re-hashed: read back at finish
        elif tail_size:
            self.hasher = _hash_file(self._segment(current))
            if state.get("md5") not in (None, self.hasher.hexdigest()):
                raise _changed(
                    str(self._segment(current)), "the part waiting to be uploaded changed"
                )

    @property
    def size(self) -> int:
        return self._size

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.object_key}"

    def _segment(self, part: int) -> Path:
        return self.tail.with_name(f"{self.tail.name}.{part}")

    def _segments(self) -> list[tuple[int, Path]]:
        prefix = self.tail.name + "."
        out = []
        for p in self.tail.parent.glob(f"{self.tail.name}.*"):
            number = p.name[len(prefix) :]
            if number.isdigit():
                out.append((int(number), p))
        return sorted(out)

    def _remove_segments(self, from_part: int = 1, below: int | None = None) -> None:
        for number, path in self._segments():
            if number >= from_part and (below is None or number < below):
                path.unlink(missing_ok=True)

    def _tail_size(self) -> int:
        return self._size - sum(int(p["Size"]) for p in self.parts)

    def _open_segment(self) -> None:
        if self.done is not None:
            raise AssertionError(f"{self.key}: appended to after it was finished")
        path = self._segment(len(self.parts) + 1)
        # Bytes of the current segment that are in a checkpoint were cut back to on resume;
        # a new segment starts empty whatever an interrupted run left in it.
        mode = "ab" if self._tail_size() else "wb"
        self._fh = open(path, mode)  # noqa: SIM115 (kept open across appends)

    def append(self, data: bytes | memoryview) -> None:
        if self._fh is None:
            self._open_segment()
        self._fh.write(data)
        if self.hasher is not None:
            self.unhashed.append(data)
        self._size += len(data)
        if self._tail_size() >= PART_SIZE:
            self._upload_tail_as_part()

    def _upload_part(self, number: int) -> dict[str, Any]:
        size = self._tail_size()
        with open(self._segment(number), "rb") as body:
            response = self.dest.client.upload_part(
                Bucket=self.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,
                **self.dest.owner_args,
            )
        return {"PartNumber": number, "ETag": response["ETag"], "Size": size}

    def _upload_tail_as_part(self) -> None:
        self._fh.close()
        self._fh = None
        try:
            if self.upload_id is None:
                response = self.dest.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.object_key, **self.dest.put_args
                )
                self.upload_id = response["UploadId"]
            part = self._upload_part(len(self.parts) + 1)
        except Exception as e:
            raise s3_error(e, self.url) from e
        self.parts.append(part)
        crashpoints.reached("part_uploaded")

    def sync(self) -> dict[str, Any]:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        state: dict[str, Any] = {
            "upload_id": self.upload_id,
            "parts": self.parts,
            "tail": self._tail_size(),
        }
        if not self.parts and self.hasher is not None and not self.unhashed:
            state["md5"] = self.hasher.hexdigest()
        if self.completing is not None:
            state["completing"] = self.completing
        if self.done is not None:
            state["done"] = self.done
        return state

    def checkpointed(self) -> None:
        # Segments of parts the checkpoint lists as uploaded are needed no more.
        current = len(self.parts) + 1
        if current > self._kept:
            self._remove_segments(below=current)
            self._kept = current

    def finish_prepare(self) -> dict[str, Any] | None:
        """Uploads the last part of a multipart object; its full part list goes into the
        checkpoint before the upload is completed."""
        if self.done is not None or self.upload_id is None or self.completing is not None:
            return None
        self.abandon()
        if self._tail_size() > 0:
            try:
                part = self._upload_part(len(self.parts) + 1)
            except Exception as e:
                raise s3_error(e, self.url) from e
            self.parts.append(part)
            crashpoints.reached("part_uploaded")
        self.completing = self.parts
        return self.sync()

    def finish(self) -> dict[str, Any]:
        if self.done is not None:
            return self.sync()
        self.abandon()
        client = self.dest.client
        try:
            if self.upload_id is None:
                with open(self._segment(1), "rb") as body:
                    etag = client.put_object(
                        Bucket=self.bucket, Key=self.object_key, Body=body, **self.dest.put_args
                    )["ETag"]
            else:
                assert self.completing is not None, "finish_prepare comes first"
                etag = self._complete()
            crashpoints.reached("object_written")
            if self.hasher is None:
                md5 = self._read_back_md5()
            else:
                hash_appends([self])
                md5 = self.hasher.hexdigest()
        except InputError:
            raise
        except Exception as e:
            raise s3_error(e, self.url) from e
        self.done = {"md5": md5, "size": self._size, "etag": etag}
        self.parts, self.completing = [], None
        return self.sync()

    def _complete(self) -> str:
        """Completes the upload; returns the object's ETag."""
        assert self.completing is not None
        client = self.dest.client
        try:
            response = client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.object_key,
                UploadId=self.upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self.completing
                    ]
                },
                **self.dest.owner_args,
            )
        except Exception as e:
            code = error_code(e)
            if code != "NoSuchUpload":
                raise
            # Completed by the interrupted run, after it recorded the part list and before it
            # recorded the completion: the object must be exactly those parts.
            return self._check_completed(e)
        return str(response["ETag"])

    def _check_completed(self, cause: Exception) -> str:
        try:
            head = self.dest.client.head_object(
                Bucket=self.bucket, Key=self.object_key, **self.dest.owner_args
            )
        except Exception:
            head = None
        parts = len(self.completing or [])
        etag = str((head or {}).get("ETag", "")).strip('"')
        if (
            head is None
            or int(head.get("ContentLength", -1)) != self._size
            or ("-" in etag and etag.rsplit("-", 1)[1] != str(parts))
        ):
            raise ResumeError(
                f"{self.url}: cannot resume: its multipart upload is gone and the object is "
                f"not the {self._size} bytes in {parts} parts the checkpoint recorded; start "
                "over with --overwrite"
            ) from cause
        return str(head["ETag"])

    def verify(self) -> None:
        if self.done is None:
            return
        try:
            head = self.dest.client.head_object(
                Bucket=self.bucket, Key=self.object_key, **self.dest.owner_args
            )
        except Exception as e:
            code = error_code(e)
            if code in ("404", "NoSuchKey", "NotFound"):
                raise _changed(self.url, "it was completed, then removed") from e
            raise s3_error(e, self.url) from e
        etag = self.done.get("etag")
        if int(head["ContentLength"]) != self._size or etag not in (None, head["ETag"]):
            raise _changed(self.url, "it was completed, then replaced")

    def _read_back_md5(self) -> str:
        md5 = hashlib.md5()
        body = self.dest.client.get_object(
            Bucket=self.bucket, Key=self.object_key, **self.dest.owner_args
        )["Body"]
        while chunk := body.read(_HASH_CHUNK):
            md5.update(chunk)
        return md5.hexdigest()

    def release(self) -> None:
        """The object is complete and recorded: its local segments go."""
        self._remove_segments(from_part=1)

    def abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
