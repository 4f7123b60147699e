"""The `tfprune` command as a newcomer meets it: help and usage errors
without TensorFlow, commands without TensorFlow's log lines.

Each case runs in a fresh Python process: in this one TensorFlow is
imported already.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

import tfprune
from tfprune import find_wrappers

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras", "jax", "tfprune", "numpy")

# Runs `tfprune_cli.main(argv)` and prints, last, its status, which of HEAVY
# it imported and the TF_CPP_MIN_LOG_LEVEL it left.
_PROBE = f"""
import json, os, sys
import tfprune_cli
status = tfprune_cli.main(json.loads(sys.argv[1]))
print(json.dumps({{"status": status, "imported": [m for m in {HEAVY!r} if m in sys.modules],
                  "level": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}}))
"""


def _probe(argv, level=None):
    """(result of `_PROBE`, stdout before it, stderr) of a fresh process,
    with TF_CPP_MIN_LOG_LEVEL set to `level` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1]), "\n".join(lines[:-1]), proc.stderr


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A pruned `.keras` model (tfprune's wrappers in it)."""
    path = tmp_path_factory.mktemp("cli_startup") / "model.keras"
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    pruned = tfprune.prune(model, 0.5)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(0.5)
    pruned.save(path)
    return path


@pytest.mark.parametrize("command", [[], ["inspect"], ["export"], ["oneshot"]],
                         ids=["tfprune", "inspect", "export", "oneshot"])
def test_help_imports_no_tensorflow(command):
    result, out, err = _probe(command + ["--help"])
    assert result["status"] == 0 and result["imported"] == [], result
    assert out.startswith(f"usage: {' '.join(['tfprune'] + command)}") and err == ""
    if not command:  # a global flag
        assert "--verbose" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["inspect"], "the following arguments are required: PATH"),
        (["inspect", "a.keras", "b.keras"], "unrecognized arguments: b.keras"),
        (["export", "model.keras"], "give at least one of --saved-model DIR and --tflite FILE"),
        (["export", "model.keras", "--saved-model", "sm", "--quantize", "dynamic"],
         "--quantize applies to --tflite"),
        (["oneshot", "model.keras", "-o", "out.keras"], "--method sparsegpt needs --data FILE"),
        (["oneshot", "model.keras", "--method", "magnitude", "-o", "out.h5"],
         "-o/--output must be a .keras file"),
        (["oneshot", "model.keras", "--granularity", "4:2", "-o", "out.keras"],
         "argument --granularity: must be 'unstructured' or N:M with 0 < N < M, not '4:2'"),
    ],
)
def test_usage_errors_exit_2_without_tensorflow(argv, message):
    result, out, err = _probe(argv)
    assert result["status"] == 2 and result["imported"] == [], result
    assert out == "" and err.startswith("usage: tfprune") and message in err.splitlines()[-1]


def test_the_console_script_is_the_light_entry_point():
    """The installed `tfprune` script (`make install`) imports no TensorFlow for
    its help: it must be `tfprune_cli:main`, not a module of the package."""
    script = pathlib.Path(sys.executable).with_name("tfprune")
    if not script.is_file():
        pytest.skip(f"no installed `tfprune` script beside {sys.executable}")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    assert proc.returncode == 0 and proc.stdout.startswith("usage: tfprune"), proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tfprune_cli" in imported, "reinstall tfprune (`pip install -e .`): the script is stale"
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.parametrize(
    "flags, level",
    [([], None), ([], "0"), (["--verbose"], None)],
    ids=["quiet", "user-level-kept", "verbose"],
)
def test_a_command_prints_no_tensorflow_log_lines(model_file, flags, level):
    result, out, err = _probe(flags + ["inspect", str(model_file)], level=level)
    assert result["status"] == 0 and "tensorflow" in result["imported"], result
    assert f"Keras file {model_file}" in out and "50.00%" in out
    if flags:
        # Left alone (JAX, which TensorFlow imports, sets a default of 1 itself).
        assert result["level"] != "3", result
    elif level is None:
        # The start-up lines ignore TF_CPP_MIN_LOG_LEVEL: hidden too.
        assert result["level"] == "3" and err == "", (result, err)
    else:
        assert result["level"] == level, result


def test_an_error_is_one_line_without_log_lines(tmp_path):
    missing = tmp_path / "missing.keras"
    result, out, err = _probe(["inspect", str(missing)])
    assert result["status"] == 1 and result["level"] == "3", result
    assert out == "" and err.splitlines() == [
        f"tfprune inspect: error: {missing}: no such file or directory"
    ]
