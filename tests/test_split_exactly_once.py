"""Exactly once around the commit path: one run per destination, a dead worker noticed at once,
this machine's full disk never blamed on the input, nothing left behind by a killed run, and
random kills of a run with a sparse target over 64 shards.

The crash harness (test_crash_resume.py) stops the driver at each step of its commit path; the
tests here cover what happens around it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import crash_harness as h


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h.write_input(tmp_path_factory.mktemp("once") / "input")


@pytest.fixture(scope="module")
def baseline(source: Path, tmp_path_factory: pytest.TempPathFactory) -> h.Output:
    tmp = tmp_path_factory.mktemp("baseline")
    config = h.write_config(tmp, source, str(tmp / "out"), "zstd")
    done = h.split(config, "--workers", "2")
    assert done.returncode == 1, done.stderr
    return h.read_output(h.local_objects(tmp / "out"), "zstd", ["Big", "Sparse"])


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", *args],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def state_of(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()[0]


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- one run per destination ---------------------------------------------------------------


def test_a_second_run_on_a_live_destination_is_refused(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    # The first run freezes itself after its second checkpoint, alive and holding the dest.
    first = start(config, env=dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:2:stop"))
    try:
        wait_for(lambda: state_of(first.pid) == "T")
        for args in (["--resume"], ["--overwrite"], []):
            second = h.split(config, *args, timeout=60)
            assert second.returncode == 2, second.stderr
            line = one_line(second.stderr)
            assert "another split is running" in line and f"pid {first.pid}" in line, line
        os.kill(first.pid, signal.SIGCONT)
        _, stderr = first.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first.pid, signal.SIGCONT)
        if first.poll() is None:
            first.kill()
            first.communicate()
    # The refused runs touched nothing: the first one finished as if alone.
    assert first.returncode == 1, stderr
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)


def test_the_lock_of_a_killed_run_is_taken_over(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    killed = start(config, env=dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:2:kill"))
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    holder = json.loads((tmp_path / "out" / "_state" / "lock").read_text())
    assert holder["pid"] == killed.pid, "the lock names the run that held it"
    done = h.split(config, "--resume")
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)


# --- a dead worker -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_at_once(source: Path, tmp_path: Path) -> None:
    # zstd level 19 makes each file take seconds: the other worker has long to go.
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    slow = config.read_text().replace('compression = "zstd"', 'compression = "zstd"\nlevel = 19')
    config.write_text(slow)
    run = start(config, "--workers", "2")
    try:
        wait_for(lambda: len(children(run.pid)) >= 2)
        time.sleep(0.5)  # both workers are into their first files
        victim = children(run.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = run.communicate(timeout=120)
        noticed = time.monotonic() - killed_at
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 2, stderr
    line = one_line(stderr)
    assert "died with signal 9 (SIGKILL)" in line and "--resume" in line, line
    # Noticed when it died, not when the other worker ran out of work (tens of seconds here).
    assert noticed < 5, f"the dead worker was noticed after {noticed:.1f} s"
    assert (tmp_path / "out" / "_state" / "checkpoint.json").exists(), "the checkpoint is kept"


# --- this machine's disk -----------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (needs root; the test skips without it)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    """Frees space: the tmpfs at `path` is made larger, its files kept."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


@pytest.mark.parametrize("on_bad_file", ["stop", "skip"])
def test_full_spill_disk_stops_the_run_and_blames_no_input_file(
    source: Path, baseline: h.Output, tmp_path: Path, on_bad_file: str
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    with small_disk(tmp_path / "state", "1m") as state:
        args = ("--state-dir", str(state), "--on-bad-file", on_bad_file, "--workers", "1")
        full = h.split(config, *args)
        assert full.returncode == 2, full.stderr
        line = one_line(full.stderr)
        assert "No space left on device" in line and "--resume" in line, line
        assert "part-" not in line.split("spill")[0], "no input file is blamed"
        assert (state / "checkpoint.json").exists(), "the checkpoint is kept"
        assert json.loads((state / "checkpoint.json").read_text())["bad"] == []
        grow(state, "64m")
        done = h.split(config, "--resume", *args)
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)
    assert got.summary["files"]["bad"] == []


def test_full_destination_disk_stops_the_run_then_resumes(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", "6m") as disk:
        config = h.write_config(tmp_path, source, str(disk / "out"), "zstd")
        full = h.split(config, "--workers", "1")
        assert full.returncode == 2, full.stderr
        line = one_line(full.stderr)
        assert "No space left on device" in line and "--resume" in line, line
        assert (disk / "out" / "_state" / "checkpoint.json").exists(), "the checkpoint is kept"
        grow(disk, "64m")
        done = h.split(config, "--resume", "--workers", "1")
        assert done.returncode == 1, done.stderr
        got = h.read_output(h.local_objects(disk / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)


def test_unwritable_destination_is_one_line(source: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    config = h.write_config(tmp_path, source, str(tmp_path / "file" / "out"), "zstd")
    done = h.split(config)
    assert done.returncode == 2
    assert "file/out" in one_line(done.stderr)


# --- nothing left behind ---------------------------------------------------------------------


def test_stale_state_folders_are_swept_and_no_semaphores_leak(source: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    root = cache / "ddbshard" / "state"
    empty, leftovers, resumable = root / ("0" * 16), root / ("1" * 16), root / ("2" * 16)
    (leftovers / "spill").mkdir(parents=True)
    empty.mkdir(parents=True)
    resumable.mkdir(parents=True)
    (resumable / "checkpoint.json").write_text("{}")
    old = time.time() - 3600
    for d in (empty, leftovers, resumable):
        os.utime(d, (old, old))
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), DDBSHARD_CRASH_AT="checkpointed:1:kill")
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    killed = h.split(config, "--workers", "2", env=env)
    assert killed.returncode == -9
    time.sleep(1.5)  # a resource tracker would report leaks when it sees the driver gone
    assert "leaked" not in killed.stderr, killed.stderr
    assert not empty.exists() and not leftovers.exists(), "state folders with nothing to resume"
    assert resumable.exists(), "a folder with a checkpoint is some run's, kept"


# --- random kills ------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_random_kills_of_a_sparse_target_over_64_shards(tmp_path: Path) -> None:
    """Kills at random instants (mid-file or mid-commit, whatever is running), each run resumed
    by the next; 64 shards per target, so that most of the Sparse target's shards are created
    late. zstd level 19 makes a run last seconds. The end result is the uninterrupted run's."""
    source = h.write_input(tmp_path / "input", files=12, items_per_file=1000, compressible=True)

    def config_in(folder: Path) -> Path:
        folder.mkdir()
        config = h.write_config(folder, source, str(folder / "out"), "zstd")
        text = config.read_text().replace("shards = 2", "shards = 64")
        config.write_text(text.replace('compression = "zstd"', 'compression = "zstd"\nlevel = 19'))
        return config

    whole = config_in(tmp_path / "whole")
    assert h.split(whole, "--workers", "2").returncode == 1
    want = h.read_output(h.local_objects(tmp_path / "whole" / "out"), "zstd", ["Big", "Sparse"])
    config = config_in(tmp_path / "killed")
    rng = random.Random(int(os.environ.get("DDBSHARD_TEST_SEED", "18")))
    kills = 0
    args: list[str] = []
    while kills < 10:
        run = start(config, "--workers", "2", *args)
        time.sleep(rng.uniform(0.3, 2.0))
        if run.poll() is not None:
            run.communicate()
            break  # finished before this kill
        run.kill()
        run.communicate()
        kills += 1
        args = ["--resume"]
    done = h.split(config, "--workers", "2", *args)
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.local_objects(tmp_path / "killed" / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, want)
    assert kills >= 5, f"only {kills} kills landed before the run finished"
