"""The append-only output objects split writes (shards, rejects), local or S3.

Shards and the rejects file are *append-only objects* that survive a crash: the driver appends
the output of each finished input file, then records every object's state in the checkpoint
(`sync()`); `--resume` reopens each object at its recorded state, dropping whatever was
appended after it. Compressed frames (zstd) and members (gzip) concatenate, so the resumed
object is still one valid stream.

- Local: a file, truncated back to the recorded length on resume.
- S3: a multipart upload fed from a local tail file. Parts must be at least 5 MiB (all but the
  last), so bytes accumulate in the tail until a part is full; the checkpoint records the
  upload id, the parts uploaded and the tail's length. A part uploaded after the last
  checkpoint is simply uploaded again under the same number on resume (S3 keeps the last
  upload of a part number, and completion lists the parts the checkpoint knows).

Objects are created on their first bytes, so a shard that receives no item leaves no object
behind (ImportTable fails on an empty object under its prefix). MD5 and size are taken from the
bytes as written; an S3 object continued after a resume is read back once at the end for its
MD5, since a hash's running state cannot be saved.

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
from typing import TYPE_CHECKING, Any, Protocol

from ddbshard._core import Md5, md5_update_many
from ddbshard.exceptions import InputError
from ddbshard.storage import s3_error

if TYPE_CHECKING:
    from ddbshard.sink import S3Dest

PART_SIZE = 8 << 20  # S3 multipart part size (minimum 5 MiB for all parts but the last)
_HASH_CHUNK = 8 << 20


class OutputObject(Protocol):
    key: str  # relative to dest, e.g. "Posts/data/part-00000.json.zst"
    hasher: Md5 | None  # the MD5 of the bytes before `unhashed`; None: read back at finish
    unhashed: list[bytes | memoryview]  # appended, not yet in `hasher` (see hash_appends)

    @property
    def size(self) -> int: ...

    def append(self, data: bytes | memoryview) -> None:
        """Appends bytes; their MD5 waits for the next hash_appends (or finish)."""
        ...

    def sync(self) -> dict[str, Any]:
        """Makes everything appended so far durable; returns the state to resume from."""
        ...

    def finish(self) -> str:
        """Closes the object (completes the upload); returns its MD5 in hex."""
        ...

    def abandon(self) -> None:
        """Releases resources without finishing (the state stays resumable)."""
        ...


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


def _hash_file(path: Path) -> Md5:
    """The running MD5 of a file's bytes, to go on appending to (a resumed object)."""
    hasher = Md5()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher


class LocalObject:
    def __init__(self, path: Path, key: str, state: dict[str, Any] | None) -> None:
        self.key = key
        self.path = path
        self._size = 0
        self.hasher: Md5 | None = Md5()
        self.unhashed: list[bytes | memoryview] = []
        self._fh: Any = None
        if state is not None:
            self._size = int(state["size"])
            self._restore()

    @property
    def size(self) -> int:
        return self._size

    def _restore(self) -> None:
        # Bytes past the checkpoint belong to input files that will be read again.
        with open(self.path, "r+b") as f:
            f.truncate(self._size)
        self.hasher = _hash_file(self.path)

    def append(self, data: bytes | memoryview) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open across appends)
        self._fh.write(data)
        self.unhashed.append(data)
        self._size += len(data)

    def sync(self) -> dict[str, Any]:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return {"size": self._size}

    def finish(self) -> str:
        self.abandon()
        hash_appends([self])
        assert self.hasher is not None  # a local object is hashed as it is written
        return self.hasher.hexdigest()

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
        self.tail = tail
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []  # {"PartNumber", "ETag", "Size"}
        self.hasher: Md5 | None = Md5()
        self.unhashed: list[bytes | memoryview] = []
        self._size = 0
        self._fh: Any = None
        self.tail.parent.mkdir(parents=True, exist_ok=True)
        if state is not None:
            self.upload_id = state.get("upload_id")
            self.parts = list(state.get("parts", []))
            tail_size = int(state["tail"])
            self._size = sum(p["Size"] for p in self.parts) + tail_size
            with open(self.tail, "a+b") as f:
                f.truncate(tail_size)
            if self.parts:
                self.hasher = None  # uploaded parts cannot be re-hashed: read back at finish
            else:
                self.hasher = _hash_file(self.tail)
        else:
            self.tail.unlink(missing_ok=True)

    @property
    def size(self) -> int:
        return self._size

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.object_key}"

    def _tail_size(self) -> int:
        return self._size - sum(int(p["Size"]) for p in self.parts)

    def append(self, data: bytes | memoryview) -> None:
        if self._fh is None:
            self._fh = open(self.tail, "ab")  # noqa: SIM115 (kept open across appends)
        self._fh.write(data)
        if self.hasher is not None:
            self.unhashed.append(data)
        self._size += len(data)
        if self._tail_size() >= PART_SIZE:
            self._upload_tail_as_part()

    def _upload_tail_as_part(self) -> None:
        client = self.dest.client
        self._fh.flush()
        try:
            if self.upload_id is None:
                response = client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.object_key, **self.dest.put_args
                )
                self.upload_id = response["UploadId"]
            number = len(self.parts) + 1
            size = self._tail_size()
            with open(self.tail, "rb") as body:
                response = client.upload_part(
                    Bucket=self.bucket,
                    Key=self.object_key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body,
                    **self.dest.owner_args,
                )
        except Exception as e:
            raise s3_error(e, self.url) from e
        self.parts.append({"PartNumber": number, "ETag": response["ETag"], "Size": size})
        self._fh.close()
        self._fh = open(self.tail, "wb")  # noqa: SIM115 (the tail starts over)

    def sync(self) -> dict[str, Any]:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return {"upload_id": self.upload_id, "parts": self.parts, "tail": self._tail_size()}

    def finish(self) -> str:
        client = self.dest.client
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        try:
            if self.upload_id is None:
                with open(self.tail, "rb") as body:
                    client.put_object(
                        Bucket=self.bucket, Key=self.object_key, Body=body, **self.dest.put_args
                    )
            else:
                if self._tail_size() > 0 or not self.parts:
                    with open(self.tail, "rb") as body:
                        response = client.upload_part(
                            Bucket=self.bucket,
                            Key=self.object_key,
                            UploadId=self.upload_id,
                            PartNumber=len(self.parts) + 1,
                            Body=body,
                            **self.dest.owner_args,
                        )
                    self.parts.append(
                        {
                            "PartNumber": len(self.parts) + 1,
                            "ETag": response["ETag"],
                            "Size": self._tail_size(),
                        }
                    )
                client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.object_key,
                    UploadId=self.upload_id,
                    MultipartUpload={
                        "Parts": [
                            {"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self.parts
                        ]
                    },
                    **self.dest.owner_args,
                )
            self.tail.unlink(missing_ok=True)
            if self.hasher is None:
                return self._read_back_md5()
        except InputError:
            raise
        except Exception as e:
            raise s3_error(e, self.url) from e
        hash_appends([self])
        return self.hasher.hexdigest()

    def _read_back_md5(self) -> str:
        md5 = hashlib.md5()
        body = self.dest.client.get_object(
            Bucket=self.bucket, Key=self.object_key, **self.dest.owner_args
        )["Body"]
        while chunk := body.read(_HASH_CHUNK):
            md5.update(chunk)
        return md5.hexdigest()

    def abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
