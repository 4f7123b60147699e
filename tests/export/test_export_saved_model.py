"""`tfprune.export.saved_model`: reload, outputs, sparsity read back, atomicity."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tests.export_models import MODELS
from tests.export_models import SPARSITY
from tests.export_models import inputs as _inputs
from tfprune import export
from tfprune import find_wrappers

L = keras.layers


@pytest.fixture(scope="module")
def models(export_models):
    return export_models


class _Exported(dict):
    """`{kind: ExportResult}`, each exported on first use and kept for the
    module: a pytest-xdist worker exports only what its own tests read."""

    def __init__(self, models, folder):
        super().__init__()
        self.models, self.folder = models, folder

    def __missing__(self, kind):
        self[kind] = export.saved_model(self.models[kind], self.folder / kind)
        return self[kind]


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    return _Exported(models, tmp_path_factory.mktemp("saved_models"))


@pytest.mark.parametrize("kind", MODELS)
def test_round_trip(models, exported, kind):
    result = exported[kind]
    loaded = tf.saved_model.load(result.path)
    x = _inputs(kind, 7, seed=5)  # a batch size the export never saw
    expected = keras.ops.convert_to_numpy(tfprune.strip(models[kind])(x))
    np.testing.assert_allclose(loaded.serve(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    by_signature = loaded.signatures["serving_default"](input_0=tf.constant(x))["output_0"]
    np.testing.assert_allclose(by_signature.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert result.format == "saved_model" and result.max_abs_error <= 1e-4
    assert result.bytes == sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(result.path) for f in files
    )
    assert 0 < result.gzip_bytes < result.bytes and "tar" in result.gzip_method


@pytest.mark.parametrize("kind", MODELS)
def test_pruned_tensors_stay_sparse(models, exported, kind):
    expected = tfprune.sparsity_report(models[kind]).sparsity
    assert exported[kind].sparsity == pytest.approx(expected, abs=1e-9)
    assert exported[kind].sparsity == pytest.approx(SPARSITY, abs=0.01)
    # Independently of the exporter: the stored kernels hold the zeros.
    stored = [v.numpy() for v in tf.saved_model.load(exported[kind].path).variables if v.shape.rank >= 2]
    zeros = sum(int(np.sum(v == 0)) for v in stored)
    assert zeros / sum(v.size for v in stored) > 0.5
    report = export.inspect(exported[kind].path)
    assert report.kind == "saved_model" and report.sparsity > 0.5
    assert report.inputs[0][0] == "input_0"


def test_result_prints_a_summary(exported):
    text = str(exported["mlp"])
    assert text.startswith("SavedModel written to ")
    assert "tar + gzip -9 of the directory" in text and "80." in text


def test_sample_inputs_are_checked(models, tmp_path):
    x = _inputs("mlp", 3, seed=0)
    result = export.saved_model(models["mlp"], tmp_path / "a", sample_inputs=x)
    assert result.max_abs_error < 1e-5
    with pytest.raises(ValueError, match=r"Received: sample_inputs with shapes \[\(3, 5\)\]"):
        export.saved_model(models["mlp"], tmp_path / "b", sample_inputs=np.zeros((3, 5)))
    assert os.listdir(tmp_path) == ["a"]


def test_keras_file_path_is_accepted(models, tmp_path):
    models["mlp"].save(tmp_path / "m.keras")
    result = export.saved_model(str(tmp_path / "m.keras"), tmp_path / "sm")
    assert result.sparsity == pytest.approx(SPARSITY, abs=0.01)


def test_existing_path_needs_overwrite(models, tmp_path):
    target = tmp_path / "sm"
    target.mkdir()
    (target / "keep.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"overwrite=True.*Received: path='.*sm'$"):
        export.saved_model(models["mlp"], target)
    assert os.listdir(target) == ["keep.txt"]
    export.saved_model(models["mlp"], target, overwrite=True)
    assert "saved_model.pb" in os.listdir(target) and "keep.txt" not in os.listdir(target)
    assert os.listdir(tmp_path) == ["sm"]


def test_failed_verification_leaves_nothing(models, tmp_path, monkeypatch):
    from tfprune.export import _saved_model

    def wrong(loaded, arrays):
        return [np.full((len(arrays[0]), 1), 1e3, dtype="float32")]

    monkeypatch.setattr(_saved_model, "_run", wrong)
    with pytest.raises(export.ExportError, match="outputs differ from the Keras model"):
        export.saved_model(models["mlp"], tmp_path / "sm")
    assert os.listdir(tmp_path) == []


def test_lost_sparsity_is_an_error(models, tmp_path, monkeypatch):
    from tfprune.export import _saved_model

    def dense_values(loaded, model):
        return {id(v): np.ones(v.shape, dtype="float32") for v in model.variables}

    monkeypatch.setattr(_saved_model, "_artifact_variables", dense_values)
    with pytest.raises(export.ExportError, match="differs from the model's"):
        export.saved_model(models["mlp"], tmp_path / "sm")
    assert os.listdir(tmp_path) == []


def test_bad_arguments(models, tmp_path):
    with pytest.raises(TypeError, match=r"Received: model=42$"):
        export.saved_model(42, tmp_path / "sm")
    with pytest.raises(ValueError, match=r"`.keras` file. Received: model='model.h5'$"):
        export.saved_model("model.h5", tmp_path / "sm")
    with pytest.raises(TypeError, match=r"Received: path=3$"):
        export.saved_model(models["mlp"], 3)
    with pytest.raises(TypeError, match=r"Received: verify='yes'$"):
        export.saved_model(models["mlp"], tmp_path / "sm", verify="yes")
    with pytest.raises(ValueError, match=r"existing directory.*Received: path="):
        export.saved_model(models["mlp"], tmp_path / "missing" / "sm")
    assert os.listdir(tmp_path) == []


def test_subclassed_model_needs_sample_inputs(tmp_path):
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    x = np.ones((2, 4), dtype="float32")
    model(x)
    with pytest.raises(ValueError, match=r"sample_inputs.*Received: model="):
        export.saved_model(model, tmp_path / "a")
    result = export.saved_model(model, tmp_path / "b", sample_inputs=x)
    loaded = tf.saved_model.load(result.path)
    np.testing.assert_allclose(loaded.serve(x).numpy(), model(x), atol=1e-6)


def test_shrink(tmp_path):
    model = keras.Sequential([keras.Input((8,)), L.Dense(32, activation="relu"), L.Dense(1)])
    pruned = tfprune.prune(model, 0.5)
    kernel = find_wrappers(pruned)[0].pruned_weights[0].variable
    kernel.assign(keras.ops.convert_to_numpy(kernel) * (np.arange(32) % 2))  # 16 dead units
    result = export.saved_model(pruned, tmp_path / "sm", shrink=True)
    assert any("321 -> 161 parameters" in note for note in result.notes)
    x = _inputs("mlp", 4, seed=3)
    loaded = tf.saved_model.load(result.path)
    np.testing.assert_allclose(loaded.serve(x).numpy(), tfprune.strip(pruned)(x), atol=1e-5)
    assert sum(v.numpy().size for v in loaded.variables) == 161
