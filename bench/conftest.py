"""Collects `bench_*.py` here as test modules (pytest's default only looks for `test_*.py`), so
`pytest bench --benchmark-only` finds the benchmarks while `pytest` (testpaths = tests) skips them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
