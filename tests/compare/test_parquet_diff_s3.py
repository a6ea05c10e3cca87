"""`parquet` and `diff` against moto's S3 server over HTTP: s3:// sources, copies and results.

The same planted differences as test_parquet_diff.py, with every input and output on S3: the
export and the targets' lines are read with s3fs, the Parquet copies are written to S3 and
scanned there by polars, the key files and the summary are written to S3.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from support.diff_scenario import KEYS, build_world, check_report, run, text_lines
from support.s3_server import clear_fsspec_cache, reset, s3_client

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


def _upload(s3: Any, folder: Path, bucket: str, prefix: str) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), bucket, f"{prefix}{f.relative_to(folder)}")


def _download(s3: Any, bucket: str, prefix: str, dest: Path) -> list[str]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    for key in keys:
        path = dest / key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return keys


def test_parquet_and_diff_read_and_write_s3(endpoint: str, tmp_path: Path) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    world = build_world(tmp_path)
    s3 = s3_client(endpoint)
    for bucket in ("exports", "work"):
        s3.create_bucket(Bucket=bucket)
    _upload(s3, tmp_path / "export", "exports", "t/")
    _upload(s3, tmp_path / "actual", "work", "actual/")
    cfg = tmp_path / "s3.toml"
    cfg.write_text(
        world["cfg"]
        .read_text()
        .replace(str(tmp_path / "export"), "s3://exports/t")
        .replace(str(tmp_path / "out"), "s3://work/run1")
    )
    assert "s3://exports/t" in cfg.read_text()

    # parquet: an export on S3 to a copy on S3, routed through Posts.
    r = run(
        "parquet", "s3://exports/t/", "s3://work/copies/posts-expected", "--config", str(cfg),
        "--target", "Posts", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    keys = _download(s3, "work", "copies/posts-expected/", tmp_path / "dl")
    assert "copies/posts-expected/part-00000.parquet" in keys
    assert "copies/posts-expected/_summary.json" in keys
    table = pq.read_table(io.BytesIO((tmp_path / "dl" / "part-00000.parquet").read_bytes()))
    assert table.column_names[:2] == ["pk", "sk"]
    assert json.loads(table.schema.metadata[b"ddbshard"])["routed"] is True

    # diff: the source, the targets' lines and the results on S3; Posts's expected side is the
    # copy above (scanned on S3 by polars), the others are made from the export.
    actual = [f"--actual={t}=s3://work/actual/{t}/" for t in KEYS]
    r = run(
        "diff", str(cfg), *actual, "--expected", "Posts=s3://work/copies/posts-expected",
        "--quiet",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr + r.stdout
    out = tmp_path / "report"
    got = _download(s3, "work", "run1/_diff/", out)
    assert "run1/_diff/diff-summary.json" in got
    summary = check_report(out, world["planted"])
    assert summary["out"] == "s3://work/run1/_diff"

    # An actual side given as a Parquet copy on S3.
    r = run(
        "parquet", "s3://work/actual/Comments/", "s3://work/copies/comments-actual",
        "--config", str(cfg), "--target", "Comments", "--no-route", "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run(
        "diff", str(cfg), "--actual", "Comments=s3://work/copies/comments-actual",
        "--out", "s3://work/run2/", "--quiet",
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    body = s3.get_object(Bucket="work", Key="run2/diff-summary.json")["Body"].read()
    comments = json.loads(body)["targets"]["Comments"]
    planted = world["planted"]["Comments"]
    assert (comments["missing"], comments["unexpected"], comments["changed"]) == (
        len(planted.missing),
        len(planted.unexpected),
        len(planted.changed),
    )
    unexpected = s3.get_object(Bucket="work", Key="run2/Comments/unexpected.jsonl")["Body"]
    lines = [json.loads(x) for x in text_lines(unexpected.read().decode())]
    assert {x["Keys"]["cid"]["S"] for x in lines} == {k[0] for k in planted.unexpected}
