"""`tfprune oneshot`: prune a saved model from a calibration file."""

import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune import cli

L = keras.layers


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oneshot_cli")
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((10,), name="features"),
                              L.Dense(16, activation="relu", name="hidden"), L.Dense(2, name="head")])
    model.save(folder / "model.keras")
    x = np.random.default_rng(0).normal(size=(64, 10)).astype("float32")
    np.save(folder / "calibration.npy", x)
    np.savez(folder / "named.npz", features=x)
    np.savez(folder / "misnamed.npz", tokens=x)
    (folder / "corrupt.keras").write_bytes(b"not a zip")
    return folder


def _error(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_sparsegpt_from_a_npy_file(files, capsys):
    out = files / "pruned.keras"
    assert cli.main(["oneshot", str(files / "model.keras"), "--data",
                     str(files / "calibration.npy"), "--sparsity", "0.75", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "One-shot SparseGPT(sparsity=0.75" in text and f"wrote {out}" in text
    loaded = keras.saving.load_model(out)
    assert not any(isinstance(layer, tfprune.PruningWrapper) for layer in loaded.layers)
    report = tfprune.sparsity_report(loaded)
    assert report["hidden/kernel"]["zeros"] == 120 and report["head/kernel"]["zeros"] == 0
    # The output exists now: refused without --overwrite, replaced with it.
    args = ["oneshot", str(files / "model.keras"), "--method", "magnitude", "-o", str(out)]
    assert cli.main(args) == 1 and "pass --overwrite" in _error(capsys)
    assert cli.main(args + ["--overwrite", "--keep-wrappers", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["output"] == str(out), document
    assert document["sparsity"] == 0.5, document
    assert any(isinstance(layer, tfprune.PruningWrapper) for layer in keras.saving.load_model(out).layers)


def test_named_inputs_from_a_npz_file_and_nm(files, capsys):
    out = files / "nm.keras"
    assert cli.main(["oneshot", str(files / "model.keras"), "--data", str(files / "named.npz"),
                     "--method", "wanda", "--granularity", "2:4", "-o", str(out), "--json"]) == 0
    # 10 inputs: two groups of 4 lose 2 each, the partial group of 2 keeps both.
    assert json.loads(capsys.readouterr().out)["tensors"][0]["sparsity"] == 0.4
    assert cli.main(["oneshot", str(files / "model.keras"), "--data", str(files / "misnamed.npz"),
                     "-o", str(files / "x.keras")]) == 1
    assert "names inputs that model" in _error(capsys)


def test_usage_and_file_errors(files, capsys):
    model = str(files / "model.keras")
    assert cli.main(["oneshot", model, "-o", str(files / "a.keras")]) == 2
    assert "--method sparsegpt needs --data FILE" in _error(capsys)
    assert cli.main(["oneshot", model, "--method", "magnitude", "-o", str(files / "a.h5")]) == 2
    assert "must be a .keras file" in _error(capsys)
    assert cli.main(["oneshot", model, "--method", "magnitude", "--granularity", "4:2",
                     "-o", str(files / "a.keras")]) == 2
    assert "N:M with 0 < N < M" in _error(capsys)
    assert cli.main(["oneshot", str(files / "missing.keras"), "--method", "magnitude",
                     "-o", str(files / "a.keras")]) == 1
    assert "no such file" in _error(capsys)
    assert cli.main(["oneshot", str(files / "calibration.npy"), "--method", "magnitude",
                     "-o", str(files / "a.keras")]) == 1
    assert "MODEL must be a .keras file" in _error(capsys)
    assert cli.main(["oneshot", str(files / "corrupt.keras"), "--method", "magnitude",
                     "-o", str(files / "a.keras")]) == 1
    assert "could not load the model" in _error(capsys)
    (files / "notes.txt").write_text("not an array")
    assert cli.main(["oneshot", model, "--data", str(files / "notes.txt"),
                     "-o", str(files / "a.keras")]) == 1
    assert "not a .npy or .npz file" in _error(capsys)
    assert not (files / "a.keras").exists()


_CUSTOM_LAYERS = '''
import keras


@keras.saving.register_keras_serializable("tfprune_cli_test")
class Scale(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x
'''


def test_import_registers_the_custom_layers_of_a_model(files, tmp_path, capsys):
    import importlib.util
    import sys

    source = tmp_path / "cli_test_layers.py"
    source.write_text(_CUSTOM_LAYERS)
    spec = importlib.util.spec_from_file_location("cli_test_layers_build", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = keras.Sequential([keras.Input((10,)), L.Dense(16, name="hidden"), module.Scale(),
                              L.Dense(2, name="head")])
    model.save(tmp_path / "custom.keras")
    # As in a fresh process: the class is not registered until imported.
    keras.saving.get_custom_objects().pop("tfprune_cli_test>Scale")
    args = ["oneshot", str(tmp_path / "custom.keras"), "--method", "magnitude",
            "-o", str(tmp_path / "out.keras")]
    try:
        assert cli.main(args) == 1 and "Could not locate class 'Scale'" in _error(capsys)
        assert cli.main(["--import", str(tmp_path / "missing.py")] + args) == 1
        assert "--import" in _error(capsys) and not (tmp_path / "out.keras").exists()
        assert cli.main(["--import", "cli_test_no_such_module"] + args) == 1
        assert "No module named 'cli_test_no_such_module'" in _error(capsys)
        assert cli.main(["--import", str(source)] + args) == 0
        pruned = keras.saving.load_model(tmp_path / "out.keras")
        assert tfprune.sparsity_report(pruned)["hidden/kernel"]["zeros"] == 80
    finally:
        keras.saving.get_custom_objects().pop("tfprune_cli_test>Scale", None)
        sys.modules.pop("cli_test_layers", None)
