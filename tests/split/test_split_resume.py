"""Crash and resume: `split` killed at random moments, then `split --resume`, ends with exactly
the items an uninterrupted run writes (as a multiset per target), without reading finished
input files again, and with manifests and summary that match the files.

Kill points are chosen by progress, not by time (the CI machine's speed varies): after a
random number of input files are checkpointed, plus a random fraction of a file, so the kill
lands anywhere from between two files to the middle of one. zstd level 15 makes each file take
a noticeable moment on any machine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ddbshard import synth
from support.splitting import (
    assert_balanced,
    assert_summary_adds_up,
    key_of,
    read_summary,
    read_target,
    write_config,
)

pytestmark = pytest.mark.slow

ITEMS = 24_000
FILES = 24
SHARDS = 3
WORKERS = 2
TARGETS = """
[[target]]
name = "Profiles"
where = "kind = :p"
values = { ":p" = "profile" }
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }

[[target]]
name = "Rest"
key = { hash = "pk", range = "sk" }
key_types = { pk = "S", sk = "S" }
drop = ["kind"]
"""


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    return synth.write_export(root, ITEMS, files=FILES, seed=5)


def config_for(tmp_path: Path, export: Path, shards: int = SHARDS) -> Path:
    return write_config(
        tmp_path / "split.toml",
        source=str(export),
        dest="out",
        output=f'compression = "zstd"\nlevel = 15\nshards = {shards}\nunmatched = "drop"',
        targets=TARGETS,
    )


def command(config: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "ddbshard", "split", str(config), "--quiet",
        "--workers", str(WORKERS), *args,
    ]  # fmt: skip


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(config, *args),
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(config, *args), cwd=config.parent, capture_output=True, text=True, timeout=600
    )


def outputs(dest: Path) -> dict[str, Counter[str]]:
    """Per target, the multiset of items (after checking each manifest against the files)."""
    result = {}
    for name in ("Profiles", "Rest"):
        target = read_target(dest, name, "zstd")
        assert_balanced(target, SHARDS, workers=WORKERS * 2)  # one extra round per resume
        result[name] = Counter(key_of(it) for it in target.items)
    return result


@pytest.fixture(scope="module")
def baseline(export: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter[str]]:
    """The uninterrupted run's output."""
    folder = tmp_path_factory.mktemp("baseline")
    config = config_for(folder, export)
    done = run(config)
    assert done.returncode == 0, done.stderr
    summary = read_summary(folder / "out")
    assert summary["items"]["read"] == ITEMS
    assert summary["files"] == {"total": FILES, "read": FILES, "skipped": 0, "bad": []}
    assert not (folder / "out" / "_state").exists(), "a finished run leaves no state behind"
    return outputs(folder / "out")


def children(pid: int) -> list[int]:
    """The worker processes of a driver (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs Linux /proc to find worker processes")
    return [int(p) for p in path.read_text().split()]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def wait_gone(pids: list[int], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"processes still running: {pids}"
        time.sleep(0.05)


def checkpointed_files(dest: Path) -> int:
    try:
        ckpt = json.loads((dest / "_state" / "checkpoint.json").read_text())
    except FileNotFoundError:
        return 0
    return len(ckpt["done"])


def run_until(config: Path, files: int, extra: float) -> subprocess.Popen[str]:
    """Starts a run and returns once `files` input files are checkpointed and `extra` more
    seconds have passed; the run is still going."""
    proc = start(config)
    deadline = time.monotonic() + 300
    while checkpointed_files(config.parent / "out") < files:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1]}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(extra)
    assert proc.poll() is None, "the run ended before the kill: the export is too small"
    return proc


def kill_point(seed: int) -> tuple[int, float]:
    """After 1..FILES/2 checkpointed files (the workers are up): at least a dozen files (some
    seconds of zstd level 15 on any machine) are left, so the kill never races the end of the
    run."""
    rng = random.Random(seed)
    return rng.randrange(1, FILES // 2), rng.uniform(0, 0.05)


def resume_and_check(config: Path, baseline: dict[str, Counter[str]]) -> dict:
    dest = config.parent / "out"
    finished_before = checkpointed_files(dest)
    done = run(config, "--resume")
    assert done.returncode == 0, done.stderr
    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    assert summary["items"]["read"] == ITEMS
    assert summary["files"]["skipped"] == finished_before
    assert summary["files"]["read"] == FILES - finished_before
    assert summary["runs"] == 2
    got = outputs(dest)
    for name, want in baseline.items():
        assert got[name] == want, f"{name}: lost {want - got[name]}, doubled {got[name] - want}"
    assert not (dest / "_state").exists()
    return summary


@pytest.mark.parametrize("point", range(3))
def test_driver_killed_at_a_random_moment(
    tmp_path: Path, export: Path, baseline: dict[str, Counter[str]], point: int
) -> None:
    config = config_for(tmp_path, export)
    proc = run_until(config, *kill_point(100 + point))
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    # The orphaned workers notice and stop instead of reading on for nobody.
    wait_gone(workers)
    resume_and_check(config, baseline)


@pytest.mark.parametrize("point", range(2))
def test_worker_killed_at_a_random_moment(
    tmp_path: Path, export: Path, baseline: dict[str, Counter[str]], point: int
) -> None:
    config = config_for(tmp_path, export)
    proc = run_until(config, *kill_point(200 + point))
    workers = [p for p in children(proc.pid) if "resource_tracker" not in _cmdline(p)]
    victim = random.Random(point).choice(workers)
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "died with signal 9 (SIGKILL)" in stderr and "--resume" in stderr, stderr
    assert stderr.count("\n") == 1, "one line"
    wait_gone(workers)
    resume_and_check(config, baseline)


def test_ctrl_c_stops_promptly_and_resumes(
    tmp_path: Path, export: Path, baseline: dict[str, Counter[str]]
) -> None:
    config = config_for(tmp_path, export)
    proc = run_until(config, *kill_point(300))
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    began = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - began < 5, "Ctrl-C must stop the run promptly"
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    wait_gone(workers)
    resume_and_check(config, baseline)


def test_resume_refuses_a_changed_config(tmp_path: Path, export: Path) -> None:
    config = config_for(tmp_path, export)
    proc = run_until(config, 1, 0)
    workers = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    wait_gone(workers)
    changed = config_for(tmp_path, export, shards=SHARDS + 1)
    done = run(changed, "--resume")
    assert done.returncode == 2
    assert "cannot resume" in done.stderr and "changed" in done.stderr, done.stderr
    # --overwrite starts over and finishes
    done = run(changed, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert read_summary(tmp_path / "out")["items"]["read"] == ITEMS


def test_nothing_to_resume_after_a_finished_run(tmp_path: Path, export: Path) -> None:
    config = config_for(tmp_path, export)
    assert run(config).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")}
    # A run killed after its last write, before it could report, is resumed as finished:
    # its report again, nothing rewritten.
    done = run(config, "--resume")
    assert done.returncode == 0, done.stderr
    assert "already finished" in done.stdout, done.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")} == before
    # The same dest under another config has nothing to resume.
    done = run(config_for(tmp_path, export, shards=SHARDS + 1), "--resume")
    assert done.returncode == 2
    assert "nothing to resume" in done.stderr, done.stderr
    done = run(config)
    assert done.returncode == 2
    assert "not empty" in done.stderr and "--overwrite" in done.stderr, done.stderr


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""
