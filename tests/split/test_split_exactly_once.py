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

from support import crash_harness as h


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


@contextlib.contextmanager
def frozen_run(config: Path) -> Iterator[subprocess.Popen[str]]:
    """A run that freezes itself (SIGSTOP) after its second checkpoint, alive and holding its
    destination; the caller lets it go on with SIGCONT and waits for it. Never left behind."""
    run = start(config, env=dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:2:stop"))
    try:
        wait_for(lambda: state_of(run.pid) == "T")
        yield run
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
            run.communicate()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- one run per destination ---------------------------------------------------------------


def test_a_second_run_on_a_live_destination_is_refused(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    with frozen_run(config) as first:
        for args in (["--resume"], ["--overwrite"], []):
            second = h.split(config, *args, timeout=60)
            assert second.returncode == 2, second.stderr
            line = one_line(second.stderr)
            assert "another split is running" in line and f"pid {first.pid}" in line, line
        os.kill(first.pid, signal.SIGCONT)
        _, stderr = first.communicate(timeout=120)
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
        spill = tmp_path / "out" / "_state" / "spill"
        # both workers are into their first files: each has its spill file open
        wait_for(lambda: len(children(run.pid)) >= 2 and len(list(spill.glob("*.spill"))) >= 2)
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
    # No wait needed: the run returned once every holder of its stderr had exited, a
    # resource tracker (which would report leaks when it sees the driver gone) among them.
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
    began = time.monotonic()
    assert h.split(whole, "--workers", "2").returncode == 1
    # Kill instants scale with how long a whole run takes on this machine now (a loaded machine
    # is slower): each run gets start-up plus up to an eighth of the work, so ten kills land.
    lasts = time.monotonic() - began
    want = h.read_output(h.local_objects(tmp_path / "whole" / "out"), "zstd", ["Big", "Sparse"])
    config = config_in(tmp_path / "killed")
    rng = random.Random(int(os.environ.get("DDBSHARD_TEST_SEED", "18")))
    kills = 0
    args: list[str] = []
    while kills < 10:
        run = start(config, "--workers", "2", *args)
        time.sleep(rng.uniform(0.3, 0.3 + lasts / 8))
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


# --- found by a hostile review -----------------------------------------------------------------


def test_overwrite_killed_while_clearing_then_resume(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    """--overwrite removes the earlier output entry by entry; killed in between, --resume
    must not take what is left (and its summary) for a finished run."""
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    assert h.split(config).returncode == 1
    crash = dict(os.environ, DDBSHARD_CRASH_AT="clearing:1:kill")
    assert h.split(config, "--overwrite", env=crash).returncode == -9
    done = h.split(config, "--resume")
    assert done.returncode == 1, done.stderr
    assert "already finished" not in done.stdout
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)


def test_max_rejects_after_resume_reads_what_an_uninterrupted_run_reads(
    source: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    whole.mkdir()
    config = h.write_config(whole, source, str(whole / "out"), "zstd")
    args = ("--workers", "1", "--max-rejects", "100")
    assert h.split(config, *args).returncode == 1
    want = h.read_output(h.local_objects(whole / "out"), "zstd", ["Big", "Sparse"])
    assert want.summary["stopped"], "the limit stopped the run"
    killed = tmp_path / "killed"
    killed.mkdir()
    config = h.write_config(killed, source, str(killed / "out"), "zstd")
    crash = dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:2:kill")
    assert h.split(config, *args, env=crash).returncode == -9
    done = h.split(config, "--resume", *args)
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.local_objects(killed / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, want)


def test_two_runs_with_different_state_dirs_are_still_one_run_per_dest(
    source: Path, tmp_path: Path
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    with frozen_run(config) as first:
        other = str(tmp_path / "other-state")
        (tmp_path / "sub").mkdir()
        # The same destination, spelled another way, from another config.
        alias_dest = str(tmp_path / "sub" / ".." / "out")
        alias = h.write_config(tmp_path / "sub", source, alias_dest, "zstd")
        for cfg, args in (
            (config, ["--overwrite", "--state-dir", other]),
            (alias, ["--overwrite"]),
        ):
            second = h.split(cfg, *args, timeout=60)
            assert second.returncode == 2, second.stderr
            assert f"pid {first.pid}" in one_line(second.stderr)
        os.kill(first.pid, signal.SIGCONT)
        first.communicate(timeout=120)
    assert first.returncode == 1


def test_a_checkpoint_is_not_resumed_into_another_destination(source: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    a = h.write_config(tmp_path, source, str(tmp_path / "a"), "zstd")
    crash = dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:2:kill")
    assert h.split(a, "--state-dir", state, env=crash).returncode == -9
    (tmp_path / "b").mkdir()
    b = h.write_config(tmp_path / "b", source, str(tmp_path / "b" / "out"), "zstd")
    done = h.split(b, "--resume", "--state-dir", state)
    assert done.returncode == 2
    assert "that of a run writing to" in one_line(done.stderr)
    assert h.split(a, "--resume", "--state-dir", state).returncode == 1, "A still resumes"


@pytest.mark.parametrize("where", ["checkpointed", "complete"])
def test_a_changed_shard_is_refused_on_resume(source: Path, tmp_path: Path, where: str) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    step = "checkpointed:3:kill" if where == "checkpointed" else "object_recorded:1:kill"
    assert h.split(config, env=dict(os.environ, DDBSHARD_CRASH_AT=step)).returncode == -9
    shard = tmp_path / "out" / "Big" / "data" / "part-00000.json.zst"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped, the length kept
    shard.write_bytes(bytes(data))
    done = h.split(config, "--resume")
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "part-00000" in line and "changed" in line and "--overwrite" in line, line


def test_resumed_summary_file_counts_add_up(tmp_path: Path) -> None:
    source = h.write_input(tmp_path / "input")
    bad = source / "part-5.json.gz"
    bad.write_bytes(bad.read_bytes()[:-100])  # truncated: a bad file
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    args = ("--workers", "1", "--on-bad-file", "skip")
    crash = dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:3:kill")
    assert h.split(config, *args, env=crash).returncode == -9
    assert h.split(config, "--resume", *args).returncode == 1
    files = json.loads((tmp_path / "out" / "_summary.json").read_text())["files"]
    assert (files["read"], files["skipped"], len(files["bad"])) == (2, 3, 1)
    assert files["read"] + files["skipped"] + len(files["bad"]) == files["total"] == h.FILES


def test_a_full_disk_at_any_moment_of_a_spill_is_never_a_bad_input_file(tmp_path: Path) -> None:
    """The spill's last bytes are written when it is closed, by an error that names no file:
    whatever the free space, a file comes back ok or as this machine's disk fault."""
    from ddbshard.config import build_core_spec, load_config
    from ddbshard.split.worker import Task, split_file

    source = h.write_input(tmp_path / "input")
    config = load_config(h.write_config(tmp_path, source, str(tmp_path / "out"), "gzip"))
    spec = build_core_spec(config, {"Big": 2, "Sparse": 2})
    path = source / "part-0.json.gz"
    sizes = set()
    with small_disk(tmp_path / "spill", "8m") as disk:
        task = Task(0, str(path), path.name, None, None, str(disk / "s"), [0, 0])
        full = split_file(task, spec, None, lambda *a: None)
        assert full.status == "ok", full.reason
        size = (disk / "s").stat().st_size
        (disk / "s").unlink()
        for kib in range(max(4, size // 1024 - 48), size // 1024 + 12, 4):
            grow(disk, f"{kib}k")
            r = split_file(task, spec, None, lambda *a: None)
            assert r.status in ("ok", "disk"), f"{kib} KiB: {r.status}: {r.reason}"
            sizes.add(r.status)
            Path(task.spill).unlink(missing_ok=True)
    assert sizes == {"ok", "disk"}, sizes


def test_a_bad_file_fixed_before_resume_is_read_again(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    """Skipped as bad, then fixed while the run was stopped: --resume reads it."""
    import shutil

    copy = tmp_path / "input"
    shutil.copytree(source, copy)
    good = (copy / "part-3.json.gz").read_bytes()
    (copy / "part-3.json.gz").write_bytes(good[:-100])  # truncated: a bad file
    config = h.write_config(tmp_path, copy, str(tmp_path / "out"), "zstd")
    args = ("--workers", "1", "--on-bad-file", "skip")
    crash = dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:4:kill")
    assert h.split(config, *args, env=crash).returncode == -9
    (copy / "part-3.json.gz").write_bytes(good)
    done = h.split(config, "--resume", *args)
    assert done.returncode == 1, done.stderr  # items rejected by design, as in the baseline
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)
    assert got.summary["files"]["bad"] == []


def test_sigterm_stops_like_ctrl_c_and_resumes(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    with frozen_run(config) as run:
        os.killpg(os.getpgid(run.pid), 0)  # the run is alive
        os.kill(run.pid, signal.SIGTERM)
        os.kill(run.pid, signal.SIGCONT)
        _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stderr
    assert "Traceback" not in stderr and "--resume" in stderr, stderr
    done = h.split(config, "--resume")
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    h.assert_same(got, baseline)


def test_an_unwritable_lock_folder_is_one_line(source: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file, not a folder")
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    done = h.split(config, env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert done.returncode == 2
    assert "XDG_CACHE_HOME" in one_line(done.stderr)


def test_a_resume_right_after_a_kill_is_not_refused_by_orphaned_workers(
    source: Path, baseline: h.Output, tmp_path: Path
) -> None:
    """Forked workers get copies of the driver's lock fds; a worker orphaned by the kill must
    not keep the destination locked until it notices (the resume starts at once here)."""
    config = h.write_config(tmp_path, source, str(tmp_path / "out"), "zstd")
    config.write_text(
        config.read_text().replace('compression = "zstd"', 'compression = "zstd"\nlevel = 19')
    )
    crash = dict(os.environ, DDBSHARD_CRASH_AT="checkpointed:1:kill")
    # Not h.split: its pipes would be held open by the orphans until they exit.
    killed = subprocess.run(
        [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", "--workers", "2"],
        cwd=config.parent,
        env=crash,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    assert killed.returncode == -9
    done = h.split(config, "--resume", "--workers", "2")
    assert done.returncode == 1, done.stderr
    got = h.read_output(h.local_objects(tmp_path / "out"), "zstd", ["Big", "Sparse"])
    assert got.items == baseline.items and got.rejects == baseline.rejects
