"""The `tfprune` command line: inspect, export, exit codes and error lines."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfprune
from tfprune import cli
from tfprune import find_wrappers

pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is not installed")

L = keras.layers


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A pruned `.keras` model, calibration data and corrupt files."""
    folder = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16,)), L.Dense(32, activation="relu"), L.Dense(2)])
    pruned = tfprune.prune(model, 0.8)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(0.8)
    pruned.save(folder / "model.keras")
    np.save(folder / "calibration.npy", np.random.default_rng(0).standard_normal((32, 16)).astype("float32"))
    (folder / "corrupt.keras").write_bytes(b"this is not a zip file")
    (folder / "corrupt.tflite").write_bytes(b"\x00" * 64)
    return folder


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def test_help(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "inspect" in out and "export" in out
    assert cli.main(["export", "--help"]) == 0
    assert "--saved-model DIR" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["export", "model.keras"], "at least one of --saved-model"),
        (["export", "model.keras", "--tflite", "m.tflite", "--quantize", "int4"], "invalid choice"),
        (["export", "model.keras", "--tflite", "m.tflite", "--quantize", "int8"], "--representative-data"),
        (["export", "model.keras", "--saved-model", "sm", "--quantize", "dynamic"], "applies to --tflite"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_export_and_inspect(files, tmp_path, capsys):
    saved, lite = tmp_path / "sm", tmp_path / "m.tflite"
    argv = ["export", str(files / "model.keras"), "--saved-model", str(saved), "--tflite", str(lite), "--json"]
    assert cli.main(argv) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["format"] for r in results] == ["saved_model", "tflite"]
    assert results[1]["sparse_tensors"] and results[1]["max_abs_error"] < 1e-4
    assert (saved / "saved_model.pb").is_file() and lite.is_file()

    assert cli.main(["inspect", str(lite)]) == 0
    out = capsys.readouterr().out
    assert "FULLY_CONNECTED" in out and "sparse" in out and "32x16" in out
    assert cli.main(["inspect", str(saved), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "saved_model" and report["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert cli.main(["inspect", str(files / "model.keras")]) == 0
    assert "80." in capsys.readouterr().out


def test_export_int8(files, tmp_path, capsys):
    lite = tmp_path / "m.tflite"
    argv = [
        "export", str(files / "model.keras"), "--tflite", str(lite), "--quantize", "int8",
        "--representative-data", str(files / "calibration.npy"),
    ]
    assert cli.main(argv) == 0
    assert "TFLite (int8)" in capsys.readouterr().out
    assert cli.main(["inspect", str(lite), "--json"]) == 0
    dtypes = {t["dtype"] for t in json.loads(capsys.readouterr().out)["tensors"]}
    assert dtypes == {"int8"}


def test_existing_output_needs_overwrite(files, tmp_path, capsys):
    lite = tmp_path / "m.tflite"
    lite.write_bytes(b"old")
    argv = ["export", str(files / "model.keras"), "--tflite", str(lite)]
    assert cli.main(argv) == 1
    assert _error_line(capsys).endswith("already exists; pass --overwrite to replace it")
    assert lite.read_bytes() == b"old"
    assert cli.main(argv + ["--overwrite"]) == 0
    assert lite.read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "{tmp}/missing.tflite"], "no such file"),
        (["inspect", "{files}/corrupt.tflite"], "could not be read as a .tflite file"),
        (["inspect", "{files}/corrupt.keras"], "could not be read as a .keras file"),
        (["inspect", "{files}/calibration.npy"], "must be a `.keras` file"),
        (["export", "{tmp}/missing.keras", "--tflite", "{tmp}/m.tflite"], "no such file"),
        (["export", "{files}/corrupt.keras", "--tflite", "{tmp}/m.tflite"], "could not load the model"),
        (
            ["export", "{files}/model.keras", "--tflite", "{tmp}/m.tflite", "--quantize", "int8",
             "--representative-data", "{files}/corrupt.keras"],
            "not a .npy or .npz file",
        ),
    ],
)
def test_errors_exit_1_with_one_line(files, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, files=files) for a in argv]
    assert cli.main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith(f"tfprune {argv[0]}: error: ") and message in line
    assert os.listdir(tmp_path) == []


def test_python_dash_m(files, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    missing = subprocess.run(
        [sys.executable, "-m", "tfprune", "inspect", str(tmp_path / "nope.tflite")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("tfprune inspect: error: ")
    usage = subprocess.run(
        [sys.executable, "-m", "tfprune", "export", str(files / "model.keras")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert usage.returncode == 2 and "usage: tfprune" in usage.stderr
