"""The package's layout is the data's path: no import circle, and no stage imports one that
uses it (io never imports split, config never imports a job stage, the commands only sit on
top).

Imports are read from the source (ast), at module level and inside functions alike; those
under `if TYPE_CHECKING:` are types only and never run, so they do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "ddbshard"

# Lowest first: a module may import its own stage and the stages below it.
STAGES = [
    (
        "base",
        {
            "exceptions",
            "_core",
            "crashpoints",
            "progress",
            "synth",
            "compression",
            "limits",
            "__init__",
        },
    ),
    ("io", {"io"}),
    ("config", {"config"}),
    ("aws", {"aws"}),
    ("split", {"split"}),
    ("catchup", {"catchup"}),
    ("compare", {"compare"}),
    ("commands", {"commands"}),
    ("cli", {"cli", "__main__"}),
]
RANK = {part: rank for rank, (_, parts) in enumerate(STAGES) for part in parts}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from ddbshard.split import driver` imports ddbshard.split.driver
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name in modules:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {module_name(p) for p in files} | {"ddbshard._core"}
    return {module_name(p): imports_of(p, modules) - {module_name(p)} for p in files}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_package_has_every_module_in_a_stage() -> None:
    unplaced = sorted(m for m in graph() if stage(m) not in RANK)
    assert unplaced == [], f"modules outside the stages of this test: {unplaced}"


def test_no_import_circle() -> None:
    edges = graph()
    # Package __init__ modules are entered on the way to their children: an edge to a
    # package is an edge to its __init__, which is what Python runs.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                circle = [*path[path.index(n) :], n]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_no_stage_imports_a_stage_that_uses_it() -> None:
    wrong = []
    for m, targets in graph().items():
        for t in targets:
            if RANK[stage(t)] > RANK[stage(m)]:
                wrong.append(f"{m} imports {t}")
    assert wrong == [], "\n".join(sorted(wrong))


def test_commands_have_one_shape() -> None:
    from ddbshard.commands import COMMANDS, load

    for name in COMMANDS:
        module = load(name)
        assert callable(getattr(module, "add_arguments", None)), name
        assert callable(getattr(module, "run", None)), name
