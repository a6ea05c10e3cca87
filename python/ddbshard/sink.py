"""Where split writes: shards, rejects, manifests and the summary under `dest` (local or S3).

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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
from pathlib import Path
from typing import Any, Protocol

from ddbshard.exceptions import InputError
from ddbshard.storage import is_s3, s3_client, s3_error, split_url

PART_SIZE = 8 << 20  # S3 multipart part size (minimum 5 MiB for all parts but the last)
_HASH_CHUNK = 8 << 20


class OutputObject(Protocol):
    key: str  # relative to dest, e.g. "Posts/data/part-00000.json.zst"

    @property
    def size(self) -> int: ...

    def append(self, data: bytes) -> None: ...

    def sync(self) -> dict[str, Any]:
        """Makes everything appended so far durable; returns the state to resume from."""
        ...

    def finish(self) -> str:
        """Closes the object (completes the upload); returns its MD5 in hex."""
        ...

    def abandon(self) -> None:
        """Releases resources without finishing (the state stays resumable)."""
        ...


class LocalObject:
    def __init__(self, path: Path, key: str, state: dict[str, Any] | None) -> None:
        self.key = key
        self.path = path
        self._size = 0
        self._md5 = hashlib.md5()
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
            while chunk := f.read(_HASH_CHUNK):
                self._md5.update(chunk)

    def append(self, data: bytes) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open across appends)
        self._fh.write(data)
        self._md5.update(data)
        self._size += len(data)

    def sync(self) -> dict[str, Any]:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return {"size": self._size}

    def finish(self) -> str:
        self.abandon()
        return self._md5.hexdigest()

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
        self._md5: Any = hashlib.md5()
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
                self._md5 = None  # uploaded parts cannot be re-hashed: read back at finish
            else:
                with open(self.tail, "rb") as f:
                    while chunk := f.read(_HASH_CHUNK):
                        self._md5.update(chunk)
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

    def append(self, data: bytes) -> None:
        if self._fh is None:
            self._fh = open(self.tail, "ab")  # noqa: SIM115 (kept open across appends)
        self._fh.write(data)
        if self._md5 is not None:
            self._md5.update(data)
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
            if self._md5 is None:
                return self._read_back_md5()
        except InputError:
            raise
        except Exception as e:
            raise s3_error(e, self.url) from e
        return str(self._md5.hexdigest())

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


class Dest(Protocol):
    url: str
    is_s3: bool

    def existing_entries(self) -> list[str]: ...
    def existing_keys(self, keys: list[str]) -> list[str]: ...
    def clear(self, names: list[str]) -> None: ...
    def remove(self, keys: list[str]) -> None: ...
    def read_json(self, key: str) -> Any: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def open_object(self, key: str, state: dict[str, Any] | None) -> OutputObject: ...
    def write_json(self, key: str, obj: Any) -> None: ...
    def url_of(self, key: str) -> str: ...
    def abort_uploads(self, objects: dict[str, dict[str, Any]]) -> None: ...


def open_dest(
    url: str,
    state_dir: Path,
    *,
    sse: str | None = None,
    sse_kms_key_id: str | None = None,
    expected_bucket_owner: str | None = None,
) -> Dest:
    if is_s3(url):
        return S3Dest(url, state_dir, sse, sse_kms_key_id, expected_bucket_owner)
    if sse or expected_bucket_owner:
        raise InputError(f"{url}: sse and expected_bucket_owner apply to s3:// destinations only")
    return LocalDest(url)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"


class LocalDest:
    is_s3 = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.removeprefix("file://"))

    def url_of(self, key: str) -> str:
        return str(self.root / key)

    def existing_entries(self) -> list[str]:
        if not self.root.exists():
            return []
        if not self.root.is_dir():
            raise InputError(f"{self.url}: destination exists and is not a folder")
        return sorted(p.name for p in self.root.iterdir())

    def existing_keys(self, keys: list[str]) -> list[str]:
        return [k for k in keys if (self.root / k).exists()]

    def clear(self, names: list[str]) -> None:
        """Removes earlier output (only the entries named)."""
        for name in names:
            p = self.root / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def remove(self, keys: list[str]) -> None:
        for key in keys:
            (self.root / key).unlink(missing_ok=True)

    def read_json(self, key: str) -> Any:
        return json.loads((self.root / key).read_bytes())

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def open_object(self, key: str, state: dict[str, Any] | None) -> OutputObject:
        return LocalObject(self.root / key, key, state)

    def write_json(self, key: str, obj: Any) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(_json_bytes(obj))
        os.replace(tmp, path)

    def abort_uploads(self, objects: dict[str, dict[str, Any]]) -> None:
        return None


class S3Dest:
    is_s3 = True

    def __init__(
        self,
        url: str,
        state_dir: Path,
        sse: str | None,
        sse_kms_key_id: str | None,
        expected_bucket_owner: str | None,
    ) -> None:
        self.url = url
        self.bucket, prefix = split_url(url)
        self.prefix = prefix.strip("/")
        self.state_dir = state_dir
        self.client = s3_client()
        # Applied to every object ddbshard writes: shards, manifests, summary and rejects
        # (rejects hold raw customer data).
        self.owner_args: dict[str, str] = {}
        if expected_bucket_owner:
            self.owner_args["ExpectedBucketOwner"] = expected_bucket_owner
        self.put_args: dict[str, str] = dict(self.owner_args)
        if sse:
            self.put_args["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self.put_args["SSEKMSKeyId"] = sse_kms_key_id

    def object_key(self, key: str) -> str:
        return posixpath.join(self.prefix, key) if self.prefix else key

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def _list(self, delimiter: bool) -> list[dict[str, Any]]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, **self.owner_args}
        if delimiter:
            args["Delimiter"] = "/"
        pages = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                pages.append(page)
        except Exception as e:
            raise s3_error(e, self.url) from e
        return pages

    def existing_entries(self) -> list[str]:
        names: set[str] = set()
        for page in self._list(delimiter=True):
            for p in page.get("CommonPrefixes", []):
                names.add(posixpath.basename(p["Prefix"].rstrip("/")))
            for o in page.get("Contents", []):
                names.add(posixpath.basename(o["Key"]))
        return sorted(names)

    def clear(self, names: list[str]) -> None:
        keys = []
        for page in self._list(delimiter=False):
            for o in page.get("Contents", []):
                rel = o["Key"][len(self.prefix) + 1 :] if self.prefix else o["Key"]
                if rel.split("/", 1)[0] in names:
                    keys.append(o["Key"])
        try:
            for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
                    **self.owner_args,
                )
        except Exception as e:
            raise s3_error(e, self.url) from e

    def list_keys(self, prefix: str) -> list[str]:
        """Keys (relative to dest) under `prefix`."""
        start = len(self.prefix) + 1 if self.prefix else 0
        out = []
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.object_key(prefix),
            **self.owner_args,
        }
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                out += [o["Key"][start:] for o in page.get("Contents", [])]
        except Exception as e:
            raise s3_error(e, self.url_of(prefix)) from e
        return sorted(out)

    def existing_keys(self, keys: list[str]) -> list[str]:
        folders = {posixpath.dirname(k) for k in keys}
        present = {k for folder in folders for k in self.list_keys(folder + "/")}
        return [k for k in keys if k in present]

    def remove(self, keys: list[str]) -> None:
        present = self.existing_keys(keys)
        try:
            for i in range(0, len(present), 1000):  # DeleteObjects takes at most 1,000 keys
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={
                        "Objects": [{"Key": self.object_key(k)} for k in present[i : i + 1000]],
                        "Quiet": True,
                    },
                    **self.owner_args,
                )
        except Exception as e:
            raise s3_error(e, self.url) from e

    def read_json(self, key: str) -> Any:
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=self.object_key(key), **self.owner_args
            )["Body"].read()
        except Exception as e:
            raise s3_error(e, self.url_of(key)) from e
        return json.loads(body)

    def open_object(self, key: str, state: dict[str, Any] | None) -> OutputObject:
        return S3Object(self, key, self.state_dir / "tails" / key, state)

    def write_json(self, key: str, obj: Any) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=_json_bytes(obj), **self.put_args
            )
        except Exception as e:
            raise s3_error(e, self.url_of(key)) from e

    def abort_uploads(self, objects: dict[str, dict[str, Any]]) -> None:
        """Aborts the multipart uploads of an abandoned run (their parts are billed until then)."""
        for key, state in objects.items():
            upload_id = state.get("upload_id")
            if upload_id:
                # Already gone or never made: nothing to free.
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket,
                        Key=self.object_key(key),
                        UploadId=upload_id,
                        **self.owner_args,
                    )
