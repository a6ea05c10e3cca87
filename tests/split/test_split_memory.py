"""Memory per worker is bounded and does not grow with the input.

Each worker reports its peak resident set size (getrusage) with every finished file; the
summary keeps the largest. A split of a few hundred MB of export lines must stay under a fixed
bound per worker, and within a small margin of the peak on an input four times smaller (both
large enough to fill the shard buffers, which are capped).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ddbshard import synth
from support.splitting import POSTS_AND_REST as TARGETS
from support.splitting import read_summary, write_config

pytestmark = pytest.mark.slow

BOUND_MB = 256  # per worker (issue: "peak RSS per worker <= 256 MB")
GROWTH_MB = 32  # allowed difference between a 4x larger and a smaller input


def split_peak(tmp: Path, items: int, files: int) -> tuple[dict[str, float], int]:
    root = synth.write_export(tmp / "export", items, files=files, seed=4, jobs=2, gzip_level=1)
    config = write_config(
        tmp / "split.toml",
        source=str(root),
        dest="out",
        output='shards = 8\nunmatched = "drop"',
        targets=TARGETS,
    )
    done = subprocess.run(
        [sys.executable, "-m", "ddbshard", "split", str(config), "--quiet", "--workers", "2"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    summary = read_summary(tmp / "out")
    assert summary["items"]["read"] == items
    return summary["memory"], summary["bytes"]["in_uncompressed"]


def test_peak_rss_per_worker_is_bounded_and_flat(tmp_path: Path) -> None:
    # Start split from a big process, as in a full test run: the peaks it reports must be its
    # own, not this parent's (Linux carries getrusage's ru_maxrss across fork and exec).
    ballast = b"x" * (BOUND_MB + 64 << 20)
    small, _ = split_peak(tmp_path / "small", 100_000, 4)
    large, large_bytes = split_peak(tmp_path / "large", 400_000, 8)
    assert large_bytes > 150 << 20, "a few hundred MB of export lines"
    for memory in (small, large):
        assert 0 < memory["worker_peak_rss_mb"] <= BOUND_MB, memory
        assert 0 < memory["driver_peak_rss_mb"] <= BOUND_MB, memory
    assert len(ballast) > BOUND_MB << 20
    growth = large["worker_peak_rss_mb"] - small["worker_peak_rss_mb"]
    assert growth <= GROWTH_MB, f"worker memory grew {growth:.0f} MB with 4x the input"
