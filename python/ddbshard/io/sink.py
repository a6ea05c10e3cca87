"""Where split writes: the destination (a local folder or an s3:// prefix), with the objects in
it (objects.py), its listing and clearing, and its small JSON files (manifests, summary).

For S3, SSE and the expected bucket owner are applied to every object written.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
from pathlib import Path
from typing import Any, Protocol

from ddbshard.exceptions import InputError
from ddbshard.io.objects import LocalObject, OutputObject, S3Object
from ddbshard.io.storage import error_code, is_s3, s3_client, s3_error, split_url


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
    def abort_stray_uploads(
        self, prefixes: list[str], owned: set[str] | None, known: dict[str, dict[str, Any]]
    ) -> None: ...


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

    def abort_stray_uploads(
        self, prefixes: list[str], owned: set[str] | None, known: dict[str, dict[str, Any]]
    ) -> None:
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
        # One listing per folder; a key at the top of the dest (_summary.json) is asked for
        # by itself, rather than listing everything under the dest.
        folders = {posixpath.dirname(k) for k in keys} - {""}
        present = {k for folder in folders for k in self.list_keys(folder + "/")}
        present |= {k for k in keys if "/" not in k and self._exists(k)}
        return [k for k in keys if k in present]

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key), **self.owner_args)
        except Exception as e:
            code = error_code(e)
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise s3_error(e, self.url_of(key)) from e
        return True

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

    def abort_stray_uploads(
        self, prefixes: list[str], owned: set[str] | None, known: dict[str, dict[str, Any]]
    ) -> None:
        """Aborts multipart uploads under `prefixes` (of keys in `owned`, if given) that the
        checkpoint `known` does not continue: a killed run started them after its last
        checkpoint, and their parts would be billed until a lifecycle rule removed them."""
        keep = {st.get("upload_id") for st in known.values()}
        start = len(self.prefix) + 1 if self.prefix else 0
        stray = []
        try:
            for prefix in prefixes:
                args: dict[str, Any] = {
                    "Bucket": self.bucket,
                    "Prefix": self.object_key(prefix),
                    **self.owner_args,
                }
                for page in self.client.get_paginator("list_multipart_uploads").paginate(**args):
                    for u in page.get("Uploads", []):
                        key = u["Key"][start:]
                        if u["UploadId"] not in keep and (owned is None or key in owned):
                            stray.append((u["Key"], u["UploadId"]))
            for key, upload_id in stray:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, **self.owner_args
                )
        except Exception as e:
            raise s3_error(e, self.url) from e
