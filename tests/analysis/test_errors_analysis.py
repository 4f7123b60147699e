"""Bad arguments to `tfprune.sensitivity`: every error names the argument."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune import sensitivity


@pytest.fixture
def regression():
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="head")])
    return model, x, x[:, :2]


@pytest.mark.parametrize("model", [3, "model.keras", None])
def test_model_must_be_a_keras_model(regression, model):
    _, x, y = regression
    message = rf"^`model` must be a Keras model\. Received: model={model!r}$"
    with pytest.raises(TypeError, match=message):
        sensitivity(model, (x, y), verbose=0)


def test_sparsities_must_not_be_empty(regression):
    model, x, y = regression
    message = r"^`sparsities` must not be empty\. Received: sparsities=\[\]$"
    with pytest.raises(ValueError, match=message):
        sensitivity(model, (x, y), sparsities=(), verbose=0)


def test_a_dataset_must_yield_x_y_batches(regression):
    model, x, _ = regression
    data = tf.data.Dataset.from_tensor_slices(x).batch(4)  # x alone, no y
    message = r"^`data` must yield \(x, y\) batches\. Received: data=a dataset yielding \w*Tensor$"
    with pytest.raises(ValueError, match=message):
        sensitivity(model, data, verbose=0)
