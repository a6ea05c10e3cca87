"""Shared parts of the crash tests: an input that reaches every step of split's commit path,
a way to read back everything a run left in its destination (local or S3), and the check that
a resumed run's output is exactly an uninterrupted run's.

The input: line files of items carrying random (incompressible) binaries, so that with
DDBSHARD_PART_SIZE at S3's 5 MiB minimum the "Big" target's single shard becomes a multipart
upload of several parts; a "Sparse" target over many shards that gets its first items late
(the shards a killed run created after its last checkpoint); items rejected for a missing key
and unmatched items, so that the rejects file is an output object too.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

FILES = 6
ITEMS_PER_FILE = 1_800
BLOB_BYTES = 1_200
PART_SIZE = 5 << 20

TARGETS = """
[[target]]
name = "Big"
where = "kind IN (:post, :profile, :bad)"
values = { ":post" = "post", ":profile" = "profile", ":bad" = "bad" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }

[[target]]
name = "Sparse"
where = "kind = :odd"
values = { ":odd" = "odd" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
drop = ["blob"]
"""


WORDS = [f"w{i:03d}" for i in range(400)]


def write_input(
    folder: Path,
    seed: int = 7,
    files: int = FILES,
    items_per_file: int = ITEMS_PER_FILE,
    compressible: bool = False,
) -> Path:
    """`files` gzip line files; "odd" items (the Sparse target's) only from the third file on.
    Blobs are random bytes, or with `compressible` words (slow to compress at a high level)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for f in range(files):
        lines = []
        for i in range(items_per_file):
            n = f * items_per_file + i
            roll = rng.random()
            if f >= 2 and roll < 0.02:
                kind = "odd"
            elif roll < 0.03:
                kind = "bad"  # no sk: rejected for Big (missing_key)
            elif roll < 0.04:
                kind = "other"  # no target: unmatched, listed in the rejects
            else:
                kind = rng.choice(["post", "profile"])
            item: dict[str, Any] = {"pk": {"S": f"U#{n}"}, "kind": {"S": kind}}
            if kind != "bad":
                item["sk"] = {"S": f"K#{n}"}
            if compressible:
                text = " ".join(rng.choice(WORDS) for _ in range(BLOB_BYTES // 5))
                item["blob"] = {"B": base64.b64encode(text.encode()).decode()}
            else:
                item["blob"] = {"B": base64.b64encode(rng.randbytes(BLOB_BYTES)).decode()}
            lines.append(json.dumps({"Item": item}))
        data = ("\n".join(lines) + "\n").encode()
        (folder / f"part-{f}.json.gz").write_bytes(gzip.compress(data, 1))
    return folder


def write_config(tmp: Path, source: Path | str, dest: str, compression: str) -> Path:
    """Two shards per target: each Big shard grows past one 5 MiB part; the Sparse target's
    shards are first created by the third file's commit."""
    path = tmp / f"split-{compression}.toml"
    path.write_text(
        f"source = {json.dumps(str(source))}\n"
        f"dest = {json.dumps(dest)}\n"
        "[output]\n"
        f'compression = "{compression}"\n'
        'shards = 2\nunmatched = "reject"\n' + TARGETS
    )
    return path


def split(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=timeout,
        check=False,
    )


def decompress(data: bytes, compression: str) -> bytes:
    """All of a shard: gzip members and zstd frames, concatenated as split writes them."""
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        out = bytearray()
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as r:
            while chunk := r.read(1 << 20):
                out += chunk
        return bytes(out)
    return data


@dataclass
class Output:
    """What a finished run left in its destination, checked against its own manifests."""

    files: set[str]  # every key under the dest (the state excluded)
    items: dict[str, Counter[bytes]]  # target -> its items' lines, as a multiset
    rejects: Counter[str]  # (file, line, reason, target) of each reject record
    summary: dict[str, Any]


def read_output(objects: dict[str, bytes], compression: str, targets: list[str]) -> Output:
    """Checks every manifest against the objects' actual bytes, and that no object exists
    under a target's data/ that its manifest does not list; returns the contents."""
    items: dict[str, Counter[bytes]] = {}
    for t in targets:
        manifest = json.loads(objects[f"{t}/manifest.json"])
        listed = {f"{t}/{e['key']}" for e in manifest["shards"]}
        present = {k for k in objects if k.startswith(f"{t}/data/")}
        assert present == listed, f"{t}: objects {sorted(present ^ listed)} vs its manifest"
        counter: Counter[bytes] = Counter()
        for e in manifest["shards"]:
            body = objects[f"{t}/{e['key']}"]
            assert len(body) == e["bytes"], f"{e['key']}: {len(body)} bytes, manifest {e['bytes']}"
            assert hashlib.md5(body).hexdigest() == e["md5"], f"{e['key']}: MD5 differs"
            raw = decompress(body, compression)
            assert len(raw) == e["uncompressed_bytes"], e["key"]
            lines = raw.split(b"\n")
            assert lines[-1] == b"", f"{e['key']} ends with a newline"
            assert len(lines) - 1 == e["items"], f"{e['key']}: {len(lines) - 1} lines"
            counter.update(lines[:-1])
        assert sum(counter.values()) == manifest["items"]
        items[t] = counter
    rejects: Counter[str] = Counter()
    raw_rejects = objects.get("_rejects/rejects.jsonl", b"")
    for line in raw_rejects.splitlines():
        r = json.loads(line)
        rejects[json.dumps([r["file"], r["line"], r["reason"], r.get("target")])] += 1
    summary = json.loads(objects["_summary.json"])
    return Output(set(objects), items, rejects, summary)


def assert_same(got: Output, want: Output) -> None:
    assert got.files == want.files, sorted(got.files ^ want.files)
    for t, counter in want.items.items():
        assert got.items[t] == counter, f"{t}: items differ from the uninterrupted run's"
    assert got.rejects == want.rejects
    for k in ("items", "targets", "rejected_by_reason"):
        if k == "targets":
            for name, t in want.summary["targets"].items():
                assert got.summary["targets"][name]["written"] == t["written"], name
        else:
            assert got.summary[k] == want.summary[k], k


def local_objects(dest: Path) -> dict[str, bytes]:
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and not p.relative_to(dest).as_posix().startswith("_state")
    }


def s3_objects(client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix) :]] = body
    return out


def open_uploads(client: Any, bucket: str, prefix: str) -> list[str]:
    response = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["Key"] for u in response.get("Uploads", [])]
