"""An AWS Batch array job: N nodes split disjoint shares of one export, `finalize` joins them,
and the result is item for item what one machine writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from ddbshard import synth
from ddbshard.split.nodes import share_files, share_shards
from support.s3_server import clear_fsspec_cache, reset, s3_client
from support.splitting import POSTS_AND_REST as TARGETS
from support.splitting import key_of, read_summary, read_target, write_config

NODES = 3


def split(config: Path, *args: str) -> Any:
    command = [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", "--workers", "1"]
    return subprocess.run([*command, *args], cwd=config.parent, capture_output=True, text=True)


def finalize(config: Path) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "ddbshard", "finalize", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
    )


def test_files_are_shared_by_size_disjointly() -> None:
    sizes = [50, 10, 40, 10, 30, 20, 5]
    shares = share_files(sizes, 3)
    assert sorted(i for s in shares for i in s) == list(range(len(sizes)))
    loads = [sum(sizes[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(sizes)
    assert shares == share_files(sizes, 3), "deterministic"
    assert share_files([1], 3) == [[0], [], []]


def test_shard_numbers_are_shared_in_proportion() -> None:
    assert share_shards(10, [1, 1]) == [(0, 5), (5, 5)]
    assert share_shards(10, [3, 1]) == [(0, 7), (7, 3)]
    # every busy node gets a shard even when there are fewer shards than nodes
    assert share_shards(1, [5, 5, 5]) == [(0, 1), (1, 1), (2, 1)]
    # an idle node gets none, and the ranges stay consecutive
    assert share_shards(4, [1, 0, 1]) == [(0, 2), (2, 0), (2, 2)]


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    yield moto_endpoint


@pytest.mark.server
@pytest.mark.slow
def test_three_nodes_then_finalize_equal_one_machine(endpoint: str, tmp_path: Path) -> None:
    reset(endpoint)
    clear_fsspec_cache()
    s3 = s3_client(endpoint)
    root = synth.write_export(tmp_path / "export", 9000, files=7, seed=12)
    s3.create_bucket(Bucket="exports")
    s3.create_bucket(Bucket="imports")
    base = root.parent.parent
    for f in base.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "exports", f"e/{f.relative_to(base).as_posix()}")

    one = write_config(
        tmp_path / "one.toml",
        source=str(root),
        dest="single",
        output='shards = 6\nunmatched = "drop"',
        targets=TARGETS,
    )
    assert split(one).returncode == 0
    many = write_config(
        tmp_path / "many.toml",
        source="s3://exports/e/",
        dest="s3://imports/batch/",
        output='shards = 6\nunmatched = "drop"',
        targets=TARGETS,
    )
    # finalize before any node ran: refused
    done = finalize(many)
    assert done.returncode == 2 and "no node has finished" in done.stderr, done.stderr
    # nodes 0 and 2 with flags, node 1 from AWS Batch's variables, all at once
    env = {**os.environ, "AWS_BATCH_JOB_ARRAY_INDEX": "1", "AWS_BATCH_JOB_ARRAY_SIZE": "3"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ddbshard", "split", str(many), "--quiet"]
            + ([] if i == 1 else ["--worker-index", str(i), "--worker-count", str(NODES)]),
            cwd=tmp_path,
            env=env if i == 1 else None,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(NODES)
    ]
    for p in procs:
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
    # a node's summary gone (as if it never finished): finalize must not join fewer than three
    s3.delete_object(Bucket="imports", Key="batch/_nodes/node-0002/summary.json")
    done = finalize(many)
    assert done.returncode == 2 and "1 of 3 nodes have not finished" in done.stderr, done.stderr
    done = split(many, "--worker-index", "2", "--worker-count", "3", "--overwrite")
    assert done.returncode == 0, done.stderr
    # the config can live on S3, where an array job's nodes read it
    s3.put_object(Bucket="exports", Key="split.toml", Body=many.read_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "ddbshard", "finalize", "s3://exports/split.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="imports")["Contents"]]
    for name in ("Posts", "Rest"):
        want = Counter(key_of(it) for it in read_target(tmp_path / "single", name, "zstd").items)
        manifest = json.loads(
            s3.get_object(Bucket="imports", Key=f"batch/{name}/manifest.json")["Body"].read()
        )
        data_keys = sorted(k for k in keys if k.startswith(f"batch/{name}/data/"))
        # shard names never collide: one object per manifest entry, all distinct
        assert data_keys == sorted(f"batch/{name}/{e['key']}" for e in manifest["shards"])
        got: Counter[str] = Counter()
        for entry in manifest["shards"]:
            body = s3.get_object(Bucket="imports", Key=f"batch/{name}/{entry['key']}")
            raw = (
                zstandard.ZstdDecompressor()
                .stream_reader(body["Body"].read(), read_across_frames=True)
                .read()
            )
            lines = raw.split(b"\n")[:-1]
            assert len(lines) == entry["items"]
            got.update(key_of(json.loads(line)["Item"]) for line in lines)
        assert got == want, name
        request = json.loads(
            s3.get_object(Bucket="imports", Key=f"batch/{name}/import-table.json")["Body"].read()
        )
        assert request["S3BucketSource"]["S3KeyPrefix"] == f"batch/{name}/data/"
    summary = json.loads(s3.get_object(Bucket="imports", Key="batch/_summary.json")["Body"].read())
    single = read_summary(tmp_path / "single")
    assert summary["nodes"] == NODES
    assert summary["items"] == single["items"]
    assert summary["files"]["total"] == single["files"]["total"] == 7
    for name in ("Posts", "Rest"):
        assert summary["targets"][name]["written"] == single["targets"][name]["written"]


def test_node_flags_must_come_together(tmp_path: Path) -> None:
    root = synth.write_export(tmp_path / "export", 50, files=1, seed=1)
    config = write_config(
        tmp_path / "c.toml", source=str(root), dest="out", output="", targets=TARGETS
    )
    done = split(config, "--worker-index", "1")
    assert done.returncode == 2 and "go together" in done.stderr
    done = split(config, "--worker-index", "3", "--worker-count", "3")
    assert done.returncode == 2 and "0..count-1" in done.stderr
