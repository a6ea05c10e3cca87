"""An s3:// destination: multipart shards survive a killed driver and `--resume` completes them;
SSE and the expected bucket owner are applied to every object split writes.

Shards are uncompressed here so that one shard grows past the 8 MiB part size and the kill
lands after some parts are uploaded: the resumed run must continue the same multipart upload
(re-uploading any part sent after the checkpoint) and read the uploaded bytes back for the MD5.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbshard import synth
from support.s3_server import clear_fsspec_cache, reset, s3_client

pytestmark = [pytest.mark.server, pytest.mark.slow]

ITEMS = 40_000
FILES = 16
MOTO_ACCOUNT = "123456789012"  # the account moto's buckets belong to
CONFIG = """\
source = "{source}"
dest = "{dest}"
[output]
compression = "none"
shards = {shards}
unmatched = "reject"
{extra}
[[target]]
name = "Everything"
where = "{where}"
key = {{ hash = "pk", range = "sk" }}
key_types = {{ pk = "S", sk = "S" }}
"""


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_export(tmp_path_factory.mktemp("export"), ITEMS, files=FILES, seed=3)


def upload_export(s3: Any, export: Path) -> str:
    s3.create_bucket(Bucket="exports")
    s3.create_bucket(Bucket="imports")
    base = export.parent.parent  # the folder holding AWSDynamoDB/
    for f in base.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "exports", f"t/{f.relative_to(base).as_posix()}")
    return "s3://exports/t/"


def write_config(
    tmp: Path,
    source: str,
    dest: str,
    shards: int = 1,
    extra: str = "",
    where: str = "attribute_exists(pk)",
) -> Path:
    path = tmp / "split.toml"
    path.write_text(
        CONFIG.format(source=source, dest=dest, shards=shards, extra=extra, where=where)
    )
    return path


def command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", *args]


def lines_in(s3: Any, bucket: str, prefix: str) -> list[bytes]:
    out: list[bytes] = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        out += s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().split(b"\n")[:-1]
    return sorted(out)


def checkpoint(state: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((state / "checkpoint.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def parts_uploaded(ckpt: dict[str, Any] | None) -> int:
    if ckpt is None:
        return 0
    return sum(len(st.get("parts") or []) for st in ckpt["objects"].values())


@pytest.mark.parametrize("parts_before_kill", [0, 1])
def test_killed_s3_run_resumes_to_the_same_items(
    endpoint: str, tmp_path: Path, export: Path, parts_before_kill: int
) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    s3 = s3_client(endpoint)
    source = upload_export(s3, export)
    local = subprocess.run(
        command(write_config(tmp_path, str(export), str(tmp_path / "local"))),
        capture_output=True,
        text=True,
    )
    assert local.returncode == 0, local.stderr
    want = sorted((tmp_path / "local/Everything/data/part-00000.json").read_bytes().split(b"\n"))
    want = want[1:]  # the empty string after the final newline

    state = tmp_path / "state"
    config = write_config(tmp_path, source, "s3://imports/run/")
    proc = subprocess.Popen(
        command(config, "--state-dir", str(state), "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while True:  # kill once the wanted number of parts is checkpointed, mid-run
        ckpt = checkpoint(state)
        if ckpt and len(ckpt["done"]) >= 2 and parts_uploaded(ckpt) >= parts_before_kill:
            break
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()[1]}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # The run may have saved one more checkpoint between the look above and the kill: the
    # resume starts from the one on disk now.
    ckpt = checkpoint(state)
    assert ckpt is not None and len(ckpt["done"]) < FILES, "killed too late"

    done = subprocess.run(
        command(config, "--state-dir", str(state), "--resume", "--workers", "2"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    got = lines_in(s3, "imports", "run/Everything/data/")
    assert len(got) == len(want) == ITEMS
    assert got == want, "the resumed S3 shards hold exactly the items of a local run"
    summary = json.loads(s3.get_object(Bucket="imports", Key="run/_summary.json")["Body"].read())
    assert summary["files"]["skipped"] == len(ckpt["done"])
    assert summary["items"]["read"] == ITEMS
    manifest = json.loads(
        s3.get_object(Bucket="imports", Key="run/Everything/manifest.json")["Body"].read()
    )
    (entry,) = manifest["shards"]
    body = s3.get_object(Bucket="imports", Key="run/Everything/data/part-00000.json")["Body"]
    data = body.read()
    assert entry["md5"] == hashlib.md5(data).hexdigest()
    assert entry["bytes"] == len(data)
    assert entry["items"] == ITEMS
    if parts_before_kill:
        assert len(data) > 8 << 20, "the shard spans several multipart parts"
    assert not s3.list_multipart_uploads(Bucket="imports").get("Uploads"), "no upload left open"
    assert not state.exists(), "a finished run removes its state"


def test_sse_and_owner_apply_to_every_object(endpoint: str, tmp_path: Path) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    s3 = s3_client(endpoint)
    small = synth.write_export(tmp_path / "small", 300, files=2, seed=9)
    source = upload_export(s3, small)
    extra = f'sse = "AES256"\nexpected_bucket_owner = "{MOTO_ACCOUNT}"'
    # Items without created_at match no target and are rejected: a rejects object is written.
    config = write_config(
        tmp_path,
        source,
        "s3://imports/enc/",
        shards=2,
        extra=extra,
        where="attribute_exists(created_at)",
    )
    done = subprocess.run(command(config), capture_output=True, text=True)
    assert done.returncode == 1, done.stderr  # rejects → exit 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="imports")["Contents"]]
    assert "enc/_rejects/rejects.jsonl" in keys and "enc/_summary.json" in keys
    assert any(k.startswith("enc/Everything/data/") for k in keys)
    for key in keys:
        head = s3.head_object(Bucket="imports", Key=key)
        assert head.get("ServerSideEncryption") == "AES256", key


def test_sse_on_a_local_dest_is_refused(tmp_path: Path, export: Path) -> None:
    config = write_config(tmp_path, str(export), str(tmp_path / "out"), extra='sse = "AES256"')
    done = subprocess.run(command(config), capture_output=True, text=True)
    assert done.returncode == 2
    assert "s3:// destinations only" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
