"""Bad arguments to the exporters, `inspect` and the command line: every
error names the argument and ends `Received: name=value`. Each case fails
before anything is converted, so no model is exported here."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests._faults import unwritable_dir
from tfprune import cli
from tfprune import export
from tfprune.export import _atomic
from tfprune.export import _litert

L = keras.layers


def _model():
    return keras.Sequential([keras.Input((4,)), L.Dense(2)], name="tiny")


def _received(name, value):
    return re.escape(f"Received: {name}={value!r}") + "$"


EXPORTERS = {"saved_model": export.saved_model, "tflite": export.tflite}
both = pytest.mark.parametrize("exporter", list(EXPORTERS))


@both
def test_path_must_name_a_file(exporter, tmp_path):
    rule = r"^`path` must name a file or directory to create\. "
    folder = str(tmp_path) + os.sep
    with pytest.raises(ValueError, match=rule + _received("path", folder)):
        EXPORTERS[exporter](_model(), folder)
    with pytest.raises(ValueError, match=rule + _received("path", "")):
        EXPORTERS[exporter](_model(), "")


@both
def test_keras_path_that_does_not_exist(exporter, tmp_path):
    missing = str(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match=r"^`model` path does not exist\. " + _received("model", missing)):
        EXPORTERS[exporter](missing, tmp_path / "out")
    assert os.listdir(tmp_path) == []


@both
def test_model_that_is_not_built(exporter, tmp_path):
    model = keras.Sequential([L.Dense(2)], name="unbuilt")
    message = r"^`model` must be built before it is exported.*Received: model=unbuilt \(not built\)$"
    with pytest.raises(ValueError, match=message):
        EXPORTERS[exporter](model, tmp_path / "out")


@both
def test_sample_inputs_as_a_dict(exporter, tmp_path):
    message = (r"not a dict \(the model's inputs are not a dict\)\. "
               r"Received: sample_inputs=a dict with keys \['x'\]$")
    with pytest.raises(TypeError, match=message):
        EXPORTERS[exporter](_model(), tmp_path / "out", sample_inputs={"x": np.zeros((2, 4))})


@both
def test_sample_inputs_that_are_not_arrays(exporter, tmp_path):
    ragged = [[[1.0, 2.0, 3.0, 4.0], [5.0]]]  # one input whose rows differ in length
    rule = r"^`sample_inputs` must be an array or a list of arrays\. "
    with pytest.raises(TypeError, match=rule + _received("sample_inputs", ragged)):
        EXPORTERS[exporter](_model(), tmp_path / "out", sample_inputs=ragged)


@both
@pytest.mark.parametrize("shape", [(4,), (2, 2, 4)], ids=["rank1", "rank3"])
def test_sample_inputs_of_the_wrong_rank(exporter, tmp_path, shape):
    message = (
        r"^`sample_inputs` must hold one array per model input with shapes \[\(None, 4\)\] "
        rf"\(None: any size\)\. Received: sample_inputs with shapes \[{re.escape(str(shape))}\]$"
    )
    with pytest.raises(ValueError, match=message):
        EXPORTERS[exporter](_model(), tmp_path / "out", sample_inputs=np.zeros(shape, "float32"))
    assert os.listdir(tmp_path) == []


@both
def test_unknown_length_needs_sample_inputs(exporter, tmp_path):
    model = keras.Sequential([keras.Input((None, 4)), L.GlobalAveragePooling1D(), L.Dense(2)])
    message = (r"^`sample_inputs` is needed: the model's input shape \(None, None, 4\) "
               r".*Received: sample_inputs=None$")
    with pytest.raises(ValueError, match=message):
        EXPORTERS[exporter](model, tmp_path / "out")


@both
@pytest.mark.parametrize("tolerance", [0, -1e-3, "0.1", True])
def test_tolerance_must_be_positive(exporter, tmp_path, tolerance):
    rule = r"^`tolerance` must be a positive number .* or None for the default\. "
    with pytest.raises(ValueError, match=rule + _received("tolerance", tolerance)):
        EXPORTERS[exporter](_model(), tmp_path / "out", tolerance=tolerance)


def test_representative_data_callable_that_returns_no_iterable(tmp_path):
    def data():
        return 3

    message = (r"^`representative_data` must be an array, a list of arrays, or a callable "
               r"returning an iterable of them\. Received: representative_data=<function")
    with pytest.raises(TypeError, match=message):
        export.tflite(_model(), tmp_path / "m.tflite", quantize="int8", representative_data=data)


def test_representative_data_without_samples(tmp_path):
    def data():
        return iter([])

    message = (r"^`representative_data` must hold at least one sample\. "
               r"Received: representative_data=<function")
    with pytest.raises(ValueError, match=message):
        export.tflite(_model(), tmp_path / "m.tflite", quantize="int8", representative_data=data)
    assert os.listdir(tmp_path) == []


def test_staging_in_a_directory_that_became_unwritable(tmp_path):
    # `check_destination` passed, then the directory stopped being writable:
    # creating the staging directory fails, and the error names the directory.
    with unwritable_dir(tmp_path / "locked") as (locked, reason):
        target = str(locked / "m.tflite")
        message = (rf"cannot be written to \('{re.escape(str(locked))}': {reason}\)\. "
                   + _received("path", target))
        with pytest.raises(ValueError, match=message):
            with _atomic.Staging(target, overwrite=False):
                pass
        assert os.listdir(locked) == []


@pytest.mark.parametrize("path", [3, None, b"m.tflite"])
def test_inspect_path_type(path):
    rule = r"^`path` must be a string or a path-like object\. "
    with pytest.raises(TypeError, match=rule + _received("path", path)):
        export.inspect(path)


def test_inspect_path_that_does_not_exist(tmp_path):
    missing = str(tmp_path / "missing.tflite")
    with pytest.raises(ValueError, match=r"^`path` does not exist\. " + _received("path", missing)):
        export.inspect(missing)


def test_litert_run_needs_one_array_per_input(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    def double(x):
        return {"output_0": 2.0 * x}

    module = tf.Module()
    module.double = double
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": double})
    content = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert()
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(_litert.run(content, [x])[0], 2.0 * x)
    message = r"^`arrays` must hold one array per input of the file \(1\)\. Received: len\(arrays\)=2$"
    with pytest.raises(ValueError, match=message):
        _litert.run(content, [x, x])


def test_cli_model_must_be_a_keras_file(tmp_path, capsys):
    model = tmp_path / "model.h5"
    model.write_bytes(b"")
    assert cli.main(["export", str(model), "--tflite", str(tmp_path / "m.tflite")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"tfprune export: error: {model}: MODEL must be a .keras file"
    assert os.listdir(tmp_path) == ["model.h5"]
