"""Collects `bench_*.py` here as test modules (pytest's default only looks for `test_*.py`), so
`pytest bench --benchmark-only` finds the benchmarks while `pytest` (testpaths = tests) skips them.

pytest-benchmark's table shows times only; each benchmark's `extra_info` (items/s, MB/s, ratios)
is printed after it, one line per benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_EXTRA = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # A file named on the command line is collected by pytest itself, whatever its name.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(autouse=True)
def _keep_extra_info(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    bench = request.node.funcargs.get("benchmark")
    if bench is not None and bench.extra_info:
        found = request.config.stash.setdefault(_EXTRA, [])
        found.append((request.node.nodeid.split("::")[-1], dict(bench.extra_info)))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(_EXTRA, [])
    if not found:
        return
    terminalreporter.section("extra_info (best round)")
    width = max(len(name) for name, _ in found)
    for name, info in found:
        terminalreporter.write_line(
            f"{name:<{width}}  " + "  ".join(f"{k}={_num(v)}" for k, v in info.items())
        )


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else str(value)
