"""split against moto's S3 server over HTTP: s3→s3 gives exactly what local→local gives."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ddbshard import synth
from support.configs import config_text, target_block
from support.s3_server import clear_fsspec_cache, reset, s3_client

pytestmark = pytest.mark.server

TARGETS = (
    target_block("Posts", "post", ("pk", "sk"), 'rename = { created_at = "createdAt" }'),
    target_block("Profiles", "profile", ("user_id",)),
)


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


def _split(tmp: Path, source: str, dest: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp / f"cfg-{abs(hash(dest))}.toml"
    cfg.write_text(config_text(source, dest, *TARGETS, compression="zstd", shards=3))
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", "split", str(cfg), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )


def _unzstd(data: bytes) -> bytes:
    """Every frame of a shard (one per block; a single decompressobj stops after the first)."""
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    return reader.read()


def _lines_local(dest: Path, target: str) -> list[str]:
    out: list[str] = []
    for f in sorted((dest / target / "data").iterdir()):
        out += _unzstd(f.read_bytes()).decode().splitlines()
    return sorted(out)


def _lines_s3(s3: Any, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        out += _unzstd(body).decode().splitlines()
    return sorted(out)


def test_s3_to_s3_equals_local_to_local(endpoint: str, tmp_path: Path) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    export_dir = tmp_path / "export"
    root = synth.write_export(export_dir, 3000, files=3, seed=11)
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="exports")
    s3.create_bucket(Bucket="imports")
    for f in export_dir.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "exports", f"2026/{f.relative_to(export_dir)}")

    local = _split(tmp_path, str(root), str(tmp_path / "out"))
    assert local.returncode == 0, local.stderr
    remote = _split(tmp_path, "s3://exports/2026/", "s3://imports/run1/")
    assert remote.returncode == 0, remote.stderr

    for target in ("Posts", "Profiles"):
        want = _lines_local(tmp_path / "out", target)
        got = _lines_s3(s3, "imports", f"run1/{target}/data/")
        assert got == want and len(want) > 100
        request = json.loads(
            s3.get_object(Bucket="imports", Key=f"run1/{target}/import-table.json")["Body"].read()
        )
        assert request["S3BucketSource"] == {
            "S3Bucket": "imports",
            "S3KeyPrefix": f"run1/{target}/data/",
        }
    summary = json.loads(s3.get_object(Bucket="imports", Key="run1/_summary.json")["Body"].read())
    local_summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["items"] == local_summary["items"]
    assert summary["items"]["read"] == 3000


def test_missing_listed_object_is_named(endpoint: str, tmp_path: Path) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    export_dir = tmp_path / "export"
    root = synth.write_export(export_dir, 200, files=2, seed=12)
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="exports")
    s3.create_bucket(Bucket="imports")
    data_files = sorted((root / "data").iterdir())
    for f in export_dir.rglob("*"):
        if f.is_file() and f != data_files[0]:
            s3.upload_file(str(f), "exports", f"p/{f.relative_to(export_dir)}")
    r = _split(tmp_path, "s3://exports/p/", "s3://imports/run2/")
    assert r.returncode == 2
    assert data_files[0].name in r.stderr and "missing" in r.stderr
