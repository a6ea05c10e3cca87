"""How the CLI presents itself: the program name in its usage lines, and the README's synopses
against the parser's real options (a flag missing from the README is a flag nobody finds)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ddbshard.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_installed_script_names_itself_ddbshard() -> None:
    script = Path(sys.executable).parent / "ddbshard"
    if not script.exists():
        pytest.skip(f"no console script at {script} (package not installed in this venv)")
    r = subprocess.run([str(script), "split", "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: ddbshard split "), r.stdout[:200]
    assert "python -m" not in r.stdout
    # A usage error names it the same way.
    r = subprocess.run([str(script), "split"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: ddbshard split "), r.stderr
    assert "ddbshard split: error: the following arguments are required: config" in r.stderr


def test_module_run_names_itself_python_m_ddbshard() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ddbshard", "parquet", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python -m ddbshard parquet "), r.stdout[:200]


def _options(command: str) -> set[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        opt
        for action in sub.choices[command]._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }


def _synopsis(command: str) -> str:
    """The README's command block for `command`: its line and the indented lines after it."""
    m = re.search(rf"^\.venv/bin/python -m ddbshard {command} .*(?:\n    .*)*", README, re.M)
    assert m, f"no synopsis of {command} in the README"
    return m.group(0)


# Options documented in prose elsewhere in the README rather than in the synopsis.
ELSEWHERE = {"split": {"--worker-index", "--worker-count"}}


@pytest.mark.parametrize("command", ["split", "parquet", "diff", "validate"])
def test_every_option_is_in_the_readme_synopsis(command: str) -> None:
    synopsis = _synopsis(command)
    elsewhere = ELSEWHERE.get(command, set())
    missing = {o for o in _options(command) - elsewhere if o not in synopsis}
    assert not missing, f"{command}: not in the README's synopsis: {sorted(missing)}"
    for option in elsewhere:
        assert option in README


def test_readme_documents_validate_and_the_pitr_setting() -> None:
    assert "\n## validate" in README
    example = README[README.index("[target.table]") :]
    example = example[: example.index("```")]
    assert re.search(r"^pitr = true\b", example, re.M), "pitr missing from the config example"
    # The key the config reads (config.py _TABLE_KEYS), not a near miss.
    from ddbshard.config import _TABLE_KEYS

    assert "pitr" in _TABLE_KEYS
    assert "needs point-in-time recovery" in README and "periodic diff" in README.lower()


def test_demo_output_is_ignored_by_git() -> None:
    r = subprocess.run(["git", "check-ignore", "-q", "ddbshard-demo/Posts/manifest.json"], cwd=ROOT)
    if r.returncode == 128:
        pytest.skip("not a git work tree")
    assert r.returncode == 0, "ddbshard-demo/ (the demo's default output) is not in .gitignore"
