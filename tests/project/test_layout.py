"""The package is laid out in layers that import only downward.

foundation (`_base`) -> mask math (`_masks`) -> the public pieces
(`schedules`, `criteria`, `granularity`, `strategies`) -> the training
runtime (`_training`) -> analysis (`_analysis`) -> one-shot pruning
(`oneshot`) -> `_shrink` -> `export` -> compatibility layers (`compat`)
-> the command line. A module may import its own layer and those below.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tfprune"
LAYERS = [
    ("_base",),
    ("_masks",),
    ("schedules", "criteria", "granularity", "strategies"),
    ("_training",),
    ("_analysis",),
    ("oneshot",),
    ("_shrink",),
    ("export",),
    ("compat",),
    ("cli", "__main__", "__init__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _rank(dotted):
    parts = dotted.split(".")
    assert parts[0] == "tfprune"
    top = parts[1] if len(parts) > 1 else "__init__"
    return RANK[top]


def _module(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts)


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfprune"):
            if node.module == "tfprune":
                for alias in node.names:
                    yield f"tfprune.{alias.name}", node.lineno
            else:
                yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tfprune."):
                    yield alias.name, node.lineno


MODULES = sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in MODULES}
    assert tops <= set(RANK), sorted(tops - set(RANK))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_only(path):
    mine = _rank(_module(path))
    upward = [(target, line) for target, line in _imports(path) if _rank(target) > mine]
    assert not upward, f"{path.relative_to(ROOT)} imports upward: {upward}"
