"""Every backend branch of the package lives in `tfprune/_base/backend.py`.

The rest of the package asks that module what differs (`assigns_in_compiled`,
`step_dtype`, `lowest_k`, ...) and never tests the backend's name, imports
JAX or PyTorch, or reaches into JAX's `fit` state itself.
"""

import ast
import pathlib

import numpy as np

from tfprune._base import backend

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "tfprune"
SEAM = PACKAGE / "_base" / "backend.py"
BACKENDS = {"tensorflow", "jax", "torch"}


def _offences(path: pathlib.Path) -> list:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "keras.backend.backend":
            found.append(f"{where}: keras.backend.backend()")
        if isinstance(node, ast.Compare):
            names = [c.value for c in [node.left, *node.comparators]
                     if isinstance(c, ast.Constant) and c.value in BACKENDS]
            if names:
                found.append(f"{where}: compares with {names[0]!r}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("jax", "torch"):
                    found.append(f"{where}: import {alias.name}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("jax",
                                                                                    "torch"):
            found.append(f"{where}: from {node.module} import ...")
        if isinstance(node, ast.Attribute) and node.attr == "jax_state_sync":
            found.append(f"{where}: .jax_state_sync")
        if isinstance(node, ast.Constant) and node.value == "jax_state_sync":
            found.append(f"{where}: 'jax_state_sync'")
    return found


def test_no_backend_branch_outside_the_seam():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != SEAM:
            offences += _offences(path)
    assert not offences, "\n".join(offences)


def test_the_seam_itself_is_where_the_branches_are():
    # The scan finds what it looks for (it would pass on an empty package
    # otherwise).
    found = _offences(SEAM)
    assert any("keras.backend.backend()" in f for f in found)
    assert any("import jax" in f for f in found) and any("import torch" in f for f in found)
    assert any("jax_state_sync" in f for f in found)


def test_lowest_k_breaks_ties_toward_the_lower_index():
    rows = np.array([[1.0, 0.0, 0.0, 2.0, 0.0], [3.0, 3.0, 1.0, 3.0, 3.0]], "float32")
    values, indices = backend.lowest_k(rows, 3)
    np.testing.assert_array_equal(np.asarray(indices), [[1, 2, 4], [2, 0, 1]])
    np.testing.assert_array_equal(np.asarray(values), [[0.0, 0.0, 0.0], [1.0, 3.0, 3.0]])
