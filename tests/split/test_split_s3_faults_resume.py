"""S3 faults on each kind of object split writes, then `--resume` once the fault is gone.

Each fault is one S3 would really produce (AWS-FORMATS.md, TESTING.md): AccessDenied on one
object (a bucket policy), 503 SlowDown on every attempt the client makes, and a connection
dropped during the request, on every attempt. The first run must stop with one line naming the
object (exit 2, no traceback); the resumed run must leave exactly what an uninterrupted run
leaves: the same items, manifests matching the objects' bytes, no stray object, no open
multipart upload, and no object of the first run spoiled (a finished shard turned to zeros was
the bug this guards against).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import crash_harness as h
from support.s3_faults import Fault, FaultyS3

pytestmark = [pytest.mark.server, pytest.mark.slow]

ATTEMPTS = 3  # AWS_MAX_ATTEMPTS for the runs: a fault "past the retries" fails this many times

# Requests by the object they write: (method, key under the dest, query parameter).
OBJECTS = {
    "single_put_shard": ("PUT", "Sparse/data/part-00001", None),
    "multipart_create": ("POST", "Big/data/part-00001", "uploads"),
    "multipart_part": ("PUT", "Big/data/part-00001", "partNumber"),
    "multipart_complete": ("POST", "Big/data/part-00001", "uploadId"),
    "rejects": ("PUT", "_rejects/rejects.jsonl", None),
    "manifest": ("PUT", "Big/manifest.json", None),
    "summary": ("PUT", "_summary.json", None),
}
CASES = [
    *[(Fault.ACCESS_DENIED, kind) for kind in OBJECTS if kind != "multipart_create"],
    *[
        (Fault.SLOW_DOWN, kind)
        for kind in ("single_put_shard", "multipart_create", "multipart_part", "rejects")
    ],
    *[(Fault.DROP, kind) for kind in ("single_put_shard", "multipart_part", "multipart_complete")],
]


@pytest.fixture(scope="module")
def server() -> Iterator[FaultyS3]:
    with FaultyS3() as s3:
        yield s3


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h.write_input(tmp_path_factory.mktemp("faults") / "input")


@pytest.fixture(scope="module")
def baseline(source: Path, tmp_path_factory: pytest.TempPathFactory) -> h.Output:
    tmp = tmp_path_factory.mktemp("baseline")
    config = h.write_config(tmp, source, str(tmp / "out"), "zstd")
    assert h.split(config, "--workers", "2").returncode == 1
    return h.read_output(h.local_objects(tmp / "out"), "zstd", ["Big", "Sparse"])


@pytest.mark.parametrize(("fault", "kind"), CASES, ids=[f"{f.value}-{k}" for f, k in CASES])
def test_fault_then_resume(
    server: FaultyS3,
    source: Path,
    baseline: h.Output,
    tmp_path: Path,
    fault: Fault,
    kind: str,
) -> None:
    server.reset()
    client: Any = server.client()
    client.create_bucket(Bucket="imports")
    method, key, query = OBJECTS[kind]
    if fault is Fault.ACCESS_DENIED:
        server.deny(f"imports/run/{key}")
    else:
        server.fail(fault, method=method, key=f"imports/run/{key}", query=query, times=ATTEMPTS)
    env = server.env()
    env.update(AWS_MAX_ATTEMPTS=str(ATTEMPTS), DDBSHARD_PART_SIZE=str(h.PART_SIZE))
    config = h.write_config(tmp_path, source, "s3://imports/run/", "zstd")
    args = ("--workers", "2", "--state-dir", str(tmp_path / "state"))

    failed = h.split(config, *args, env=env)
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert key in lines[0], lines[0]
    assert server.count() >= 1, "the fault was injected"

    server.clear_faults()
    resumed = h.split(config, "--resume", *args, env=env)
    assert resumed.returncode == 1, resumed.stderr  # items rejected by design, as in baseline
    got = h.read_output(h.s3_objects(client, "imports", "run/"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)
    assert h.open_uploads(client, "imports", "run/") == []
    assert not (tmp_path / "state").exists()


def test_refused_credentials_stop_the_run_and_blame_no_file(
    server: FaultyS3, tmp_path: Path
) -> None:
    """An expired session token on the source's reads is the environment's fault: one line
    and exit 2, even with --on-bad-file skip (which would otherwise skip every file)."""
    server.reset()
    client: Any = server.client()
    client.create_bucket(Bucket="exports")
    data = h.write_input(tmp_path / "input")
    for f in sorted(data.iterdir()):
        client.upload_file(str(f), "exports", f"in/{f.name}")
    server.fail(Fault.EXPIRED_TOKEN, method="GET", key="exports/in/part-", times=1000)
    config = h.write_config(tmp_path, "s3://exports/in/", str(tmp_path / "out"), "zstd")
    done = h.split(config, "--on-bad-file", "skip", "--workers", "1", env=server.env())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ExpiredToken" in lines[0] and "--resume" in lines[0], lines
    assert not (tmp_path / "out" / "_summary.json").exists(), "no file was skipped as bad"


def test_a_killed_run_reading_s3_leaks_no_semaphores(server: FaultyS3, tmp_path: Path) -> None:
    """Workers reading S3 are spawned (fork is unsafe beside s3fs's thread), which starts
    multiprocessing's resource tracker: a killed driver must leave it nothing to report
    ("leaked semaphore objects"), as queues' named semaphores would."""
    server.reset()
    client: Any = server.client()
    client.create_bucket(Bucket="exports")
    for f in sorted(h.write_input(tmp_path / "input").iterdir()):
        client.upload_file(str(f), "exports", f"in/{f.name}")
    config = h.write_config(tmp_path, "s3://exports/in/", str(tmp_path / "out"), "zstd")
    env = dict(server.env(), DDBSHARD_CRASH_AT="checkpointed:2:kill")
    killed = h.split(config, "--workers", "2", env=env)
    assert killed.returncode == -9, killed.stderr
    # The run returned once every holder of its stderr had exited: the tracker, which reports
    # what was left when it notices its parent gone, among them.
    assert "leaked" not in killed.stderr and "resource_tracker" not in killed.stderr
    done = h.split(config, "--workers", "2", "--resume", env=server.env())
    assert done.returncode == 1, done.stderr


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_a_completed_object_changed_before_resume_is_refused(
    server: FaultyS3, source: Path, tmp_path: Path, change: str
) -> None:
    server.reset()
    client: Any = server.client()
    client.create_bucket(Bucket="imports")
    config = h.write_config(tmp_path, source, "s3://imports/run/", "zstd")
    args = ("--state-dir", str(tmp_path / "state"))
    env = dict(server.env(), DDBSHARD_PART_SIZE=str(h.PART_SIZE))
    crash = dict(env, DDBSHARD_CRASH_AT="object_recorded:1:kill")
    assert h.split(config, *args, env=crash).returncode == -9
    key = "run/Sparse/data/part-00000.json.zst"
    if change == "removed":
        client.delete_object(Bucket="imports", Key=key)
    else:
        client.put_object(Bucket="imports", Key=key, Body=b"other bytes")
    done = h.split(config, "--resume", *args, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and change in lines[0], lines


def test_overwrite_killed_while_clearing_is_never_taken_for_finished(
    server: FaultyS3, source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    """The old summary goes first: a resume that finds no checkpoint (another machine, a wiped
    cache) refuses instead of reporting the half-cleared dest as a finished run."""
    server.reset()
    client: Any = server.client()
    client.create_bucket(Bucket="imports")
    config = h.write_config(tmp_path, source, "s3://imports/run/", "zstd")
    state = ("--state-dir", str(tmp_path / "state"))
    env = server.env()
    assert h.split(config, *state, env=env).returncode == 1
    crash = dict(env, DDBSHARD_CRASH_AT="clearing:1:kill")
    assert h.split(config, "--overwrite", *state, env=crash).returncode == -9
    assert "run/_summary.json" not in h.s3_objects(client, "imports", "run/")
    elsewhere = h.split(config, "--resume", "--state-dir", str(tmp_path / "other"), env=env)
    assert elsewhere.returncode == 2, elsewhere.stdout + elsewhere.stderr
    assert "nothing to resume" in elsewhere.stderr
    done = h.split(config, "--resume", *state, env=env)
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.s3_objects(client, "imports", "run/"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)


def test_ctrl_c_while_completing_many_objects_stops_promptly(
    server: FaultyS3, source: Path, tmp_path: Path
) -> None:
    """Completion runs side by side; Ctrl-C must not wait for every object to be completed."""
    server.reset()
    client: Any = server.client()
    client.create_bucket(Bucket="imports")
    config = h.write_config(tmp_path, source, "s3://imports/run/", "zstd")
    config.write_text(config.read_text().replace("shards = 2", "shards = 300"))
    state = ("--state-dir", str(tmp_path / "state"))
    crash = dict(server.env(), DDBSHARD_CRASH_AT="object_written:3:int")
    stopped = h.split(config, *state, env=crash)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    written = [k for k in h.s3_objects(client, "imports", "run/") if "/data/" in k]
    assert len(written) < 100, f"{len(written)} of ~400 objects completed after Ctrl-C"
    done = h.split(config, "--resume", *state, env=server.env())
    assert done.returncode == 1, done.stderr
