"""`tfprune.export.tflite`: every model kind x mode, run back in LiteRT."""

import os
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tests._faults import unwritable_dir
from tests.export_models import MODELS
from tests.export_models import SPARSITY
from tests.export_models import inputs as _inputs
from tfprune import export
from tfprune import find_wrappers

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is not installed")

L = keras.layers
# (quantize, sparse) of each exported format.
MODES = {
    "float": (None, False),
    "float_sparse": (None, True),
    "dynamic": ("dynamic", True),
    "int8": ("int8", True),
    "float16": ("float16", True),
}


def _run_litert(path, x, resolver):
    interpreter = litert.Interpreter(
        model_path=path, experimental_op_resolver_type=litert.OpResolverType[resolver]
    )
    runner = interpreter.get_signature_runner()
    return runner(input_0=x)["output_0"]


@pytest.fixture(scope="module")
def models(export_models):
    return export_models


class _Exported(dict):
    """`{(model, mode): ExportResult}`, each converted on first use and kept
    for the module: a pytest-xdist worker converts only what its own tests
    read (30 conversions, about 50 s, were made in every worker)."""

    def __init__(self, models, folder):
        super().__init__()
        self.models, self.folder = models, folder

    def __missing__(self, key):
        kind, mode = key
        quantize, sparse = MODES[mode]
        self[key] = export.tflite(
            self.models[kind],
            self.folder / f"{kind}_{mode}.tflite",
            quantize=quantize,
            sparse=sparse,
            representative_data=_inputs(kind, 64, seed=2) if quantize == "int8" else None,
        )
        return self[key]


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """`{(model, mode): ExportResult}`, converted once for the module."""
    return _Exported(models, tmp_path_factory.mktemp("tflite"))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", MODELS)
def test_round_trip_in_litert(models, exported, kind, mode):
    result = exported[kind, mode]
    quantize, sparse = MODES[mode]
    # Fresh inputs, run independently of the exporter's own check; int8
    # inputs come from the calibration distribution.
    x = _inputs(kind, 5, seed=7)
    expected = keras.ops.convert_to_numpy(tfprune.strip(models[kind])(x))
    got = _run_litert(result.path, x, result.resolver)
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(got - expected)) <= export.TOLERANCES[quantize] * scale
    assert result.resolver in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")
    assert result.max_abs_error is not None and result.tolerance == export.TOLERANCES[quantize]
    assert not any(op.startswith("CUSTOM") for op in result.ops)
    assert result.bytes == os.path.getsize(result.path)
    assert 0 < result.gzip_bytes < result.bytes
    assert result.sparsity == pytest.approx(SPARSITY, abs=0.02)
    if sparse:
        assert result.sparse_tensors
    else:
        assert result.sparse_tensors == ()


@pytest.mark.parametrize("kind", ["lstm", "gru", "bilstm"])
def test_recurrent_models_are_unrolled_with_builtin_ops(exported, kind):
    result = exported[kind, "float_sparse"]
    assert any("unrolled over 6 time steps" in note for note in result.notes)
    assert "FULLY_CONNECTED" in result.ops
    assert not {"WHILE", "CUSTOM"} & set(result.ops)
    assert result.batch_size is None


def test_compact_shrinks_the_file_not_the_model(models, exported, tmp_path):
    compact = exported["lstm", "int8"]
    full = export.tflite(
        models["lstm"], tmp_path / "full.tflite", quantize="int8",
        representative_data=_inputs("lstm", 64, seed=2), compact=False,
    )
    assert compact.bytes < 0.8 * full.bytes
    names = [d["name"] for d in litert.Interpreter(model_path=compact.path).get_tensor_details()]
    assert names and not any(";" in n for n in names) and len(set(names)) == len(names)
    x = _inputs("lstm", 3, seed=4)
    np.testing.assert_array_equal(
        _run_litert(compact.path, x, compact.resolver), _run_litert(full.path, x, full.resolver)
    )


def test_int8_sparse_needs_the_builtin_resolver(exported):
    # XNNPACK refuses full-integer sparse FULLY_CONNECTED; the exporter
    # records the resolver that runs the file.
    result = exported["conv1d", "int8"]
    assert result.resolver == "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
    assert any("XNNPACK" in note for note in result.notes)
    with pytest.raises(RuntimeError, match="delegate"):
        interpreter = litert.Interpreter(model_path=result.path)
        interpreter.allocate_tensors()


def test_dense_kernel_is_stored_sparse_and_smaller(tmp_path):
    model = keras.Sequential([keras.Input((64,)), L.Dense(64), L.Dense(4)])
    pruned = tfprune.prune(model, SPARSITY, layers=[model.layers[0].name])
    find_wrappers(pruned)[0].prune_to(SPARSITY)
    dense = export.tflite(pruned, tmp_path / "dense.tflite", sparse=False)
    sparse = export.tflite(pruned, tmp_path / "sparse.tflite")
    kernel = [t for t in export.inspect(sparse.path).tensors if t["shape"] == (64, 64)]
    assert len(kernel) == 1 and kernel[0]["storage"] == "sparse"
    assert kernel[0]["name"] in sparse.sparse_tensors
    assert kernel[0]["sparsity"] == pytest.approx(SPARSITY, abs=1e-3)
    assert kernel[0]["bytes"] < 0.5 * 64 * 64 * 4
    assert sparse.bytes < 0.6 * dense.bytes
    dense_kernel = [t for t in export.inspect(dense.path).tensors if t["shape"] == (64, 64)]
    assert dense_kernel[0]["storage"] == "dense" and dense_kernel[0]["bytes"] == 64 * 64 * 4


def test_narrow_layers_are_repaired(tmp_path):
    # 3 and 6 inputs are not multiples of the 1x4 blocks the converter picks
    # at 90%: it would corrupt those kernels; they are stored dense instead.
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,)), L.Dense(20, activation="relu"), L.Dense(6), L.Dense(2)])
    pruned = tfprune.prune(model, 0.9)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(0.9)
    result = export.tflite(pruned, tmp_path / "narrow.tflite")
    assert any("stored dense" in note for note in result.notes)
    x = np.random.default_rng(0).standard_normal((6, 3)).astype("float32")
    got = _run_litert(result.path, x, result.resolver)
    np.testing.assert_allclose(got, tfprune.strip(pruned)(x), atol=1e-5)


def test_sequence_length_must_be_fixed(tmp_path):
    model = keras.Sequential([keras.Input((None, 4)), L.LSTM(4), L.Dense(1)])
    with pytest.raises(ValueError, match=r"fixed length.*Received: model=") as info:
        export.tflite(model, tmp_path / "rnn.tflite")
    assert "keras.Input((50, features))" in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("quantize", ["int4", "INT8", 8, ""])
def test_unknown_quantize(models, tmp_path, quantize):
    with pytest.raises(ValueError, match=r"`quantize` must be.*Received: quantize="):
        export.tflite(models["mlp"], tmp_path / "m.tflite", quantize=quantize)


def test_int8_needs_representative_data(models, tmp_path):
    with pytest.raises(ValueError, match=r"representative_data.*Received: representative_data=None$"):
        export.tflite(models["mlp"], tmp_path / "m.tflite", quantize="int8")


def test_representative_data_must_match_the_inputs(models, tmp_path):
    with pytest.raises(ValueError, match=r"Received: representative_data with shapes \[\(4, 5\)\]"):
        export.tflite(
            models["mlp"], tmp_path / "m.tflite", quantize="int8", representative_data=np.zeros((4, 5))
        )


def test_representative_data_as_a_generator(models, tmp_path):
    def batches():
        for seed in range(4):
            yield _inputs("mlp", 8, seed)

    result = export.tflite(models["mlp"], tmp_path / "m.tflite", quantize="int8", representative_data=batches)
    assert result.quantize == "int8" and result.max_abs_error is not None


def test_existing_path_needs_overwrite(models, tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"keep me")
    with pytest.raises(ValueError, match=r"overwrite=True.*Received: path='.*m\.tflite'$"):
        export.tflite(models["mlp"], target)
    assert target.read_bytes() == b"keep me"
    result = export.tflite(models["mlp"], target, overwrite=True)
    assert target.read_bytes()[4:8] == b"TFL3"
    assert sorted(os.listdir(tmp_path)) == ["m.tflite"] and result.path == str(target)


def test_converter_error_leaves_nothing(models, tmp_path, monkeypatch):
    class Exploding:
        target_spec = types.SimpleNamespace()

        def convert(self):
            raise RuntimeError("converter exploded")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", lambda directory: Exploding())
    with pytest.raises(export.ExportError, match="converter failed.*converter exploded"):
        export.tflite(models["mlp"], tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_verification_failure_leaves_nothing(models, tmp_path):
    # A tolerance no float16 file can meet.
    with pytest.raises(export.ExportError, match="does not reproduce the Keras model"):
        export.tflite(models["lstm"], tmp_path / "m.tflite", quantize="float16", tolerance=1e-12)
    assert os.listdir(tmp_path) == []


def test_parent_must_be_a_directory(models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"existing directory.*Received: path="):
        export.tflite(models["mlp"], blocker / "m.tflite")
    with pytest.raises(ValueError, match=r"existing directory.*Received: path="):
        export.tflite(models["mlp"], tmp_path / "missing" / "m.tflite")
    assert os.listdir(tmp_path) == ["file"]


def test_unwritable_directory(tmp_path):
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    # Runs as root too (root ignores permission bits): see `unwritable_dir`.
    with unwritable_dir(tmp_path / "locked") as (locked, reason):
        message = rf"cannot be written to \('{re.escape(str(locked))}': {reason}\)\. Received: path="
        with pytest.raises(ValueError, match=message):
            export.tflite(model, locked / "m.tflite")
        assert os.listdir(locked) == []


def test_shrink(tmp_path):
    model = keras.Sequential([keras.Input((8,)), L.Dense(32, activation="relu"), L.Dense(1)])
    pruned = tfprune.prune(model, 0.5)
    wrapper = find_wrappers(pruned)[0]
    kernel = wrapper.pruned_weights[0].variable
    kernel.assign(keras.ops.convert_to_numpy(kernel) * (np.arange(32) % 2))  # 16 dead units
    full = export.tflite(pruned, tmp_path / "full.tflite")
    shrunk = export.tflite(pruned, tmp_path / "shrunk.tflite", shrink=True)
    assert any("shrunk" in note for note in shrunk.notes)
    assert shrunk.bytes < full.bytes
    x = _inputs("mlp", 4, seed=3)
    np.testing.assert_allclose(
        _run_litert(shrunk.path, x, shrunk.resolver), tfprune.strip(pruned)(x), atol=1e-5
    )
