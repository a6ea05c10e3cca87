"""How the CLI presents itself: the program name in its usage lines, and the synopses in docs/
against the parser's real options (a flag missing from the docs is a flag nobody finds)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ddbshard.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# The page of docs/ that holds each command's synopsis.
PAGES = {
    "init": "init.md",
    "estimate": "init.md",
    "split": "split.md",
    "finalize": "split.md",
    "validate": "split.md",
    "import": "import.md",
    "keys": "catchup.md",
    "sync": "catchup.md",
    "replicate": "catchup.md",
    "parquet": "compare.md",
    "diff": "compare.md",
}


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
    """The command's synopses on its docs page: each line that runs it and the indented lines
    after it (a command may have several, such as init --from-table and --from-json)."""
    text = _doc(PAGES[command])
    blocks = re.findall(rf"^\.venv/bin/python -m ddbshard {command} .*(?:\n    .*)*", text, re.M)
    assert blocks, f"no synopsis of {command} in docs/{PAGES[command]}"
    return "\n".join(blocks)


# Options documented in prose elsewhere on the page rather than in the synopsis.
ELSEWHERE = {"split": {"--worker-index", "--worker-count"}}


@pytest.mark.parametrize("command", sorted(PAGES))
def test_every_option_is_in_the_docs_synopsis(command: str) -> None:
    synopsis = _synopsis(command)
    elsewhere = ELSEWHERE.get(command, set())
    missing = {o for o in _options(command) - elsewhere if o not in synopsis}
    assert not missing, (
        f"{command}: not in the synopsis in docs/{PAGES[command]}: {sorted(missing)}"
    )
    for option in elsewhere:
        assert option in _doc(PAGES[command])


def test_every_command_has_a_docs_page() -> None:
    parser = build_parser("x")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) - {"demo"} == set(PAGES)


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f"](docs/{page.name})" in readme, f"README does not link docs/{page.name}"
    assert "make demo" in readme and "make test" in readme


def test_docs_document_validate_and_the_pitr_setting() -> None:
    assert "\n## validate" in _doc("split.md")
    config = _doc("config.md")
    example = config[config.index("[target.table]") :]
    example = example[: example.index("```")]
    assert re.search(r"^pitr = true\b", example, re.M), "pitr missing from the config example"
    # The key the config reads (config.py _TABLE_KEYS), not a near miss.
    from ddbshard.config.load import _TABLE_KEYS

    assert "pitr" in _TABLE_KEYS
    compare = _doc("compare.md")
    assert "needs point-in-time recovery" in compare and "periodic diff" in compare.lower()


def test_config_page_documents_every_key() -> None:
    from ddbshard.config import load as config

    page = _doc("config.md")
    keys = (
        *config._TOP_KEYS, *config._OUTPUT_KEYS, *config._TARGET_KEYS, *config._TABLE_KEYS,
        *config._GSI_KEYS,
    )  # fmt: skip
    missing = sorted(k for k in keys if f"`{k}`" not in page)
    assert not missing, f"docs/config.md does not document {missing}"


def test_demo_output_is_ignored_by_git() -> None:
    r = subprocess.run(["git", "check-ignore", "-q", "ddbshard-demo/Posts/manifest.json"], cwd=ROOT)
    if r.returncode == 128:
        pytest.skip("not a git work tree")
    assert r.returncode == 0, "ddbshard-demo/ (the demo's default output) is not in .gitignore"
