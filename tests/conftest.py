"""Shared fixtures of the tfprune test suite."""

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfprune._masks import core as _mask_math  # noqa: E402
from tfprune import find_wrappers  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Cases marked `tensorflow_only` are skipped on the other backends."""
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow only (this is {keras.backend.backend()})")
    for item in items:
        if item.get_closest_marker("tensorflow_only"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_keras():
    """Same seeds and layer names in every test, whatever ran before."""
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _zeros(value) -> int:
    value = np.asarray(keras.ops.convert_to_numpy(value))
    return int(value.size - np.count_nonzero(value))


def _expected_zeros(pw, sparsity: float) -> int:
    n = int(np.prod(pw.variable.shape))
    return pw.gates * _mask_math.num_pruned(n // pw.gates, sparsity)


@pytest.fixture
def check_pruned():
    """Asserts that every wrapper of a model holds `sparsity` exactly.

    For each pruned tensor: its mask has `gates * round(n_gate * sparsity)`
    zeros and the variable itself is exactly zero wherever the mask is.
    Returns the number of tensors checked.
    """

    def check(model, sparsity: float) -> int:
        count = 0
        for wrapper in find_wrappers(model):
            for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
                mask = mask.numpy()
                value = pw.variable.numpy()
                assert _zeros(mask) == _expected_zeros(pw, sparsity), pw.name
                assert np.all(value[mask == 0] == 0), pw.name
                count += 1
        assert count > 0
        return count

    return check


@pytest.fixture
def masks_of():
    """`{tensor name: mask array}` of every wrapper of a model."""

    def masks(model) -> dict:
        return {
            pw.name: mask.numpy()
            for wrapper in find_wrappers(model)
            for pw, mask in zip(wrapper.pruned_weights, wrapper.masks)
        }

    return masks


@pytest.fixture
def run_python(tmp_path):
    """Runs Python code in a fresh interpreter and returns its result.

    The code gets `RESULT` (a path) and `json` in its globals and must write
    a JSON document to `RESULT`; that document is returned. Nothing that the
    test module imported or registered is visible to the code.
    """

    def run(code: str, timeout: float = 180):
        script = tmp_path / "script.py"
        result = tmp_path / "result.json"
        script.write_text(
            f"import json\nRESULT = {str(result)!r}\n" + textwrap.dedent(code)
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        return json.loads(result.read_text())

    return run
