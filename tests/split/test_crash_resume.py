"""The crash harness: split stopped at each step of its commit path, then resumed, gives exactly
the uninterrupted run's output.

For a local and an s3:// dest (moto's server), gzip and zstd, 1 and 2 workers, every step of
the commit path (ddbshard/crashpoints.py) and both ways of stopping (SIGKILL: nothing more runs;
SIGINT: Ctrl-C's KeyboardInterrupt and the driver's own handling), the driver is stopped at a
chosen arrival at the step; `split --resume` must then exit as the uninterrupted run did, and
leave, per target, the same items as a multiset, manifests whose items, bytes and MD5 are the
objects' actual ones, no object a manifest does not list, the same rejects and counts, and (S3)
no multipart upload left open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import crash_harness as h
from support.s3_server import reset, s3_client

# (step, arrival): the arrival is chosen where the step is interesting. Appended and synced at
# the third file, the first with items for the Sparse target: its shards are created by that
# commit, after the last checkpoint (a resume must not append to them). Checkpointed at the
# fourth. part_uploaded 1 is a part sent while appending (before its checkpoint), 3 one of the
# final parts sent at the end. object_written 2: some objects complete, others not.
STEPS = [
    ("appended", 3),
    ("synced", 3),
    ("checkpointed", 4),
    ("part_uploaded", 1),
    ("part_uploaded", 3),
    ("object_written", 2),
    ("object_recorded", 1),
    ("manifest", 1),
    ("summary", 1),
    ("finished", 1),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h.write_input(tmp_path_factory.mktemp("crash") / "input")


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> Iterator[str]:
    reset(moto_endpoint)  # one server for the session, emptied for this module
    s3_client(moto_endpoint).create_bucket(Bucket="crash")
    yield moto_endpoint


@pytest.fixture(scope="module")
def baselines(
    source: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, h.Output]]:
    """The uninterrupted run of each compression (local dest, 2 workers): what every
    interrupted and resumed run must come to."""
    out = {}
    for compression in ("gzip", "zstd"):
        tmp = tmp_path_factory.mktemp(f"baseline-{compression}")
        config = h.write_config(tmp, source, str(tmp / "out"), compression)
        done = h.split(config, "--workers", "2")
        assert done.returncode == 1, done.stderr  # items were rejected, by design
        out[compression] = (
            done.returncode,
            h.read_output(h.local_objects(tmp / "out"), compression, ["Big", "Sparse"]),
        )
    return out


def env_for(step: str, arrival: int, how: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DDBSHARD_CRASH_AT"] = f"{step}:{arrival}:{how}"
    env["DDBSHARD_PART_SIZE"] = str(h.PART_SIZE)
    return env


def interrupt_then_resume(config: Path, step: str, arrival: int, how: str, *args: str) -> None:
    crashed = h.split(config, *args, env=env_for(step, arrival, how))
    expected = -9 if how == "kill" else 130
    assert crashed.returncode == expected, (
        f"the run was not stopped at {step}:{arrival} (exit {crashed.returncode}): {crashed.stderr}"
    )
    if how == "int":
        assert "Traceback" not in crashed.stderr, crashed.stderr
    env = dict(os.environ, DDBSHARD_PART_SIZE=str(h.PART_SIZE))
    resumed = h.split(config, "--resume", *args, env=env)
    assert resumed.returncode == 1, resumed.stderr
    assert "Traceback" not in resumed.stderr, resumed.stderr


MATRIX = [
    pytest.param(
        step, arrival, how, compression, workers,
        id=f"{step}{arrival}-{how}-{compression}-w{workers}",
    )
    for step, arrival in STEPS
    for how in ("kill", "int")
    for compression in ("gzip", "zstd")
    for workers in (1, 2)
]  # fmt: skip
# A local dest uploads no parts.
LOCAL_MATRIX = [p for p in MATRIX if p.values[0] != "part_uploaded"]


@pytest.mark.slow
@pytest.mark.parametrize(("step", "arrival", "how", "compression", "workers"), LOCAL_MATRIX)
def test_local_dest(
    source: Path,
    baselines: dict[str, tuple[int, h.Output]],
    tmp_path: Path,
    step: str,
    arrival: int,
    how: str,
    compression: str,
    workers: int,
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), compression)
    interrupt_then_resume(config, step, arrival, how, "--workers", str(workers))
    got = h.read_output(h.local_objects(tmp_path / "out"), compression, ["Big", "Sparse"])
    h.assert_same(got, baselines[compression][1])
    assert not (tmp_path / "out" / "_state").exists(), "a finished run removes its state"


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.parametrize(("step", "arrival", "how", "compression", "workers"), MATRIX)
def test_s3_dest(
    endpoint: str,
    source: Path,
    baselines: dict[str, tuple[int, h.Output]],
    tmp_path: Path,
    step: str,
    arrival: int,
    how: str,
    compression: str,
    workers: int,
) -> None:
    prefix = f"{tmp_path.name}/"
    state = tmp_path / "state"
    config = h.write_config(tmp_path, source, f"s3://crash/{prefix}", compression)
    interrupt_then_resume(
        config, step, arrival, how, "--workers", str(workers), "--state-dir", str(state)
    )
    client: Any = s3_client(endpoint)
    got = h.read_output(h.s3_objects(client, "crash", prefix), compression, ["Big", "Sparse"])
    h.assert_same(got, baselines[compression][1])
    assert h.open_uploads(client, "crash", prefix) == [], "no multipart upload left open"
    assert not state.exists(), "a finished run removes its state"
