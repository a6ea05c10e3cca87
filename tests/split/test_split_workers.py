"""The worker count changes how fast split runs, never what it writes; balance is bounded by it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ddbshard import synth
from ddbshard.progress import Progress
from support.splitting import POSTS_AND_REST as TARGETS
from support.splitting import (
    assert_balanced,
    assert_summary_adds_up,
    key_of,
    read_summary,
    read_target,
    run_split,
    write_config,
)

SHARDS = 7


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_export(tmp_path_factory.mktemp("export"), 6000, files=6, seed=8)


def split_with(tmp: Path, export: Path, workers: int) -> dict[str, Counter[str]]:
    config = write_config(
        tmp / "split.toml",
        source=str(export),
        dest=f"out-{workers}",
        output=f'shards = {SHARDS}\nunmatched = "drop"',
        targets=TARGETS,
    )
    done = run_split(config, "--workers", str(workers))
    assert done.returncode == 0, done.stderr
    dest = tmp / f"out-{workers}"
    summary = read_summary(dest)
    assert_summary_adds_up(summary)
    assert summary["files"]["read"] == 6
    got = {}
    for name in ("Posts", "Rest"):
        out = read_target(dest, name, "zstd")
        assert_balanced(out, SHARDS, workers=workers)
        got[name] = Counter(key_of(it) for it in out.items)
    return got


def test_one_worker_and_three_write_the_same_items(tmp_path: Path, export: Path) -> None:
    one = split_with(tmp_path, export, 1)  # balance within one item per shard
    three = split_with(tmp_path, export, 3)  # within three
    assert one == three
    assert sum(one["Posts"].values()) > 1000 and sum(one["Rest"].values()) > 1000


def test_bad_worker_count_is_refused(tmp_path: Path, export: Path) -> None:
    config = write_config(
        tmp_path / "split.toml", source=str(export), dest="out", output="", targets=TARGETS
    )
    done = run_split(config, "--workers", "0")
    assert done.returncode == 2
    assert "--workers" in done.stderr and "at least 1" in done.stderr


def test_progress_log_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(total_items=1000, total_bytes=4 << 20)
    progress.tty = False
    progress.last = -1e9  # as if the last line was long ago
    progress.update(250, 1 << 20)
    line = capsys.readouterr().err
    assert "250 items / 1,000 (25%)" in line and "1 / 4 MiB" in line and "ETA" in line
    assert line.endswith("\n")
    progress.update(300, 1 << 20)  # within 10 s of the last line: nothing
    assert capsys.readouterr().err == ""


def test_quiet_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(total_items=10, total_bytes=10, enabled=False)
    progress.last = -1e9
    progress.update(5, 5)
    progress.close()
    assert capsys.readouterr().err == ""
