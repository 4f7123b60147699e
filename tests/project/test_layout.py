"""The package is laid out in layers that import only downward.

foundation (`_base`) -> mask math (`_masks`) -> the public pieces
(`schedules`, `criteria`, `granularity`, `strategies`) -> the training
runtime (`_training`) -> analysis (`_analysis`) -> one-shot pruning
(`oneshot`) -> `_shrink` -> `export` -> compatibility layers (`compat`)
-> the command line. A module may import its own layer and those below.

Above them all, beside the package, `tfprune_cli` parses the command line:
it imports no module of tfprune (nor Keras, TensorFlow, JAX) at its top, so
that `tfprune --help` answers at once, and `tfprune.cli` (the commands) only
to run a command. `tfprune.cli` re-exports its `main`.
"""

import ast
import configparser
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tfprune"
LAUNCHER = ROOT.parent / "tfprune_cli.py"
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
        if isinstance(node, ast.ImportFrom) and node.module and (
            node.module == "tfprune" or node.module.startswith("tfprune.")
        ):
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


def _launcher_imports():
    """(module, at the top of the file) of each import of `tfprune_cli`."""
    tree = ast.parse(LAUNCHER.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            yield name, id(node) in top


def test_the_launcher_imports_only_the_standard_library_at_its_top():
    imports = list(_launcher_imports())
    heavy = [name for name, at_top in imports
             if at_top and name.split(".")[0] not in sys.stdlib_module_names | {"__future__"}]
    assert not heavy, f"tfprune_cli.py imports at its top: {heavy}"
    assert [name for name, at_top in imports if not at_top] == ["tfprune.cli"]


def test_setup_cfg_installs_the_launcher_as_the_command():
    config = configparser.ConfigParser()
    config.read(ROOT.parent / "setup.cfg")
    assert config["options"]["py_modules"].split() == ["tfprune_cli"]
    scripts = config["options.entry_points"]["console_scripts"].strip().splitlines()
    assert scripts == ["tfprune = tfprune_cli:main"]
