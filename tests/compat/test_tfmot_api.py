"""tfprune.compat.tfmot: schedules, the XNNPACK policy, and every error,
with tfmot's message first and `Received: name=value` last."""

import numpy as np
import pytest

import keras
import tfprune.compat.tfmot as tfmot

sparsity = tfmot.sparsity.keras
L = keras.layers


def _raises(error, fragment, fn, *args, **kwargs):
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert fragment in message and "Received: " in message, message
    return message


def test_the_public_names_are_tfmots():
    assert sorted(sparsity.__all__) == sorted([
        "prune_low_magnitude", "prune_scope", "strip_pruning", "UpdatePruningStep",
        "PruningSummaries", "PruningSchedule", "ConstantSparsity", "PolynomialDecay",
        "PrunableLayer", "PruningPolicy", "PruneForLatencyOnXNNPack", "PruneLowMagnitude"])
    assert tfmot.TFMOT_VERSION == "0.8.1"


def test_polynomial_decay_steps_and_values_are_tfmots():
    # (step, should_prune, sparsity) as tfmot 0.8.1 computes them.
    schedule = sparsity.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=844)
    expected = [(0, True, 0.5), (1, False, 0.50106508), (100, True, 0.59449959),
                (800, True, 0.79995751), (844, False, 0.8), (900, False, 0.8)]
    for step, should, value in expected:
        got_should, got_value = schedule(step)
        assert bool(keras.ops.convert_to_numpy(got_should)) is should, step
        assert float(keras.ops.convert_to_numpy(got_value)) == pytest.approx(value, abs=1e-7)
    constant = sparsity.ConstantSparsity(0.5, begin_step=10, end_step=50, frequency=20)
    assert [s for s in range(0, 100)
            if bool(keras.ops.convert_to_numpy(constant(s)[0]))] == [10, 30, 50]
    forever = sparsity.ConstantSparsity(0.5, begin_step=0)
    assert bool(keras.ops.convert_to_numpy(forever(10 ** 6)[0]))
    assert schedule.get_config() == {"class_name": "PolynomialDecay", "config": {
        "initial_sparsity": 0.5, "final_sparsity": 0.8, "power": 3, "begin_step": 0,
        "end_step": 844, "frequency": 100}}
    assert sparsity.PolynomialDecay.from_config(schedule.get_config()["config"]) == schedule


def test_schedule_errors():
    _raises(ValueError, "begin_step should be >= 0", sparsity.ConstantSparsity, 0.5, -1)
    _raises(ValueError, "end_step cannot be -1", sparsity.PolynomialDecay, 0.1, 0.5, 0, -1)
    _raises(ValueError, "end_step can be -1 or >= 0", sparsity.ConstantSparsity, 0.5, 0, -5)
    _raises(ValueError, "begin_step should be <= end_step if end_step != -1",
            sparsity.ConstantSparsity, 0.5, 10, 5)
    _raises(ValueError, "frequency should be > 0", sparsity.ConstantSparsity, 0.5, 0, -1, 0)
    _raises(TypeError, "begin_step must be an integer", sparsity.ConstantSparsity, 0.5, 1.5)
    _raises(ValueError, "target_sparsity must be in range [0,1)", sparsity.ConstantSparsity, 1.0, 0)
    _raises(TypeError, "final_sparsity must be a number", sparsity.PolynomialDecay, 0.1, "0.5", 0, 9)
    _raises(ValueError, "needs end_step > begin_step", sparsity.PolynomialDecay, 0.1, 0.5, 5, 5)
    _raises(TypeError, "power must be a number", sparsity.PolynomialDecay, 0.1, 0.5, 0, 9, "3")
    assert sparsity.ConstantSparsity(0.5, np.int32(0), np.int64(100)).end_step == 100

    class Unregistered(sparsity.PruningSchedule):
        def __call__(self, step):
            return True, 0.5

        def get_config(self):
            return {"class_name": "Unregistered", "config": {}}

    config = keras.saving.serialize_keras_object(L.Dense(2))
    _raises(ValueError, "Unknown pruning schedule 'Unregistered'", sparsity.PruneLowMagnitude,
            L.Dense(2), pruning_schedule=Unregistered().get_config())
    _raises(TypeError, "must be a PruningSchedule or its get_config()",
            sparsity.PruneLowMagnitude, L.Dense(2), pruning_schedule=config["config"])
    # A custom schedule object works as it is.
    custom = Unregistered()
    assert sparsity.PruneLowMagnitude(L.Dense(2), pruning_schedule=custom).pruning_schedule is custom


def test_wrapper_and_prune_errors():
    P = sparsity.PruneLowMagnitude
    _raises(ValueError, "must be a tuple/list of 2 integers", P, L.Dense(2), sparsity_m_by_n=(2,))
    assert "element 2.0 is a float" in _raises(
        ValueError, "must be a tuple/list of 2 integers", P, L.Dense(2), sparsity_m_by_n=(2.0, 4))
    _raises(ValueError, "m be must smaller than n", P, L.Dense(2), sparsity_m_by_n=(4, 2))
    _raises(ValueError, "block_size must be a tuple/list of 2 positive integers", P, L.Dense(2),
            block_size=(1, 0))
    _raises(ValueError, "Unsupported pooling type 'MIN'. Should be 'AVG' or 'MAX'", P,
            L.Dense(2), block_pooling_type="MIN")
    _raises(ValueError, "Please initialize `Prune` layer with a `Layer` instance", P, "dense")
    _raises(ValueError, "Please initialize `Prune` layer with a `Layer` instance",
            sparsity.prune_low_magnitude, [L.Dense(2), "dense"])
    assert "ConvLSTM1D" in _raises(ValueError, "Please initialize `Prune` with a supported layer",
                                   sparsity.prune_low_magnitude, L.ConvLSTM1D(2, 3))
    _raises(ValueError, "can only prune an object of the following types",
            sparsity.prune_low_magnitude, object())
    _raises(ValueError, "Expected model to be a `keras.Model` instance", sparsity.strip_pruning,
            L.Dense(2))

    class Block(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    inputs = keras.Input((3,))
    nested = keras.Model(inputs, Block()(inputs))
    _raises(ValueError, "Subclassed models are not supported currently",
            sparsity.prune_low_magnitude, nested)


def test_callback_errors():
    model = sparsity.prune_low_magnitude(keras.Sequential([keras.Input((4,)), L.Dense(3)]))
    callback = sparsity.UpdatePruningStep()
    callback.set_model(model)
    _raises(ValueError, "counts steps with the model's optimizer", callback.on_train_begin)
    if keras.backend.backend() != "torch":  # Keras refuses it there itself
        model.compile("sgd", "mse", steps_per_execution=2)
        with pytest.raises(ValueError, match="needs `steps_per_execution=1`"):
            model.fit(np.zeros((8, 4)), np.zeros((8, 3)), verbose=0,
                      callbacks=[sparsity.UpdatePruningStep()])
    _raises(ValueError, "`log_dir` must be a non-empty string", sparsity.PruningSummaries, "")


def _mobile_model(keepdims=True, padding="valid", extra=None):
    """The on-device inference guide's model (tfmot's XNNPACK tutorial)."""
    layers = [keras.Input((32, 32, 3)), L.ZeroPadding2D(padding=1),
              L.Conv2D(8, (3, 3), strides=(2, 2), padding=padding), L.BatchNormalization(),
              L.ReLU(), L.DepthwiseConv2D((3, 3), padding="same"), L.BatchNormalization(),
              L.ReLU(), L.Conv2D(16, (1, 1)), L.BatchNormalization(), L.ReLU(),
              L.ZeroPadding2D(padding=1), L.DepthwiseConv2D((3, 3), strides=(2, 2), padding="valid"),
              L.BatchNormalization(), L.ReLU(), L.Conv2D(32, (1, 1)), L.BatchNormalization(),
              L.ReLU()] + (extra or []) + [
              L.GlobalAveragePooling2D(keepdims=keepdims), L.Flatten(), L.Dense(10)]
    return keras.Sequential(layers)


def test_prune_for_latency_on_xnnpack_wraps_the_1x1_convolutions():
    policy = sparsity.PruneForLatencyOnXNNPack()
    schedule = sparsity.PolynomialDecay(0.25, 0.75, begin_step=0, end_step=100)
    for keepdims in (True, False):  # tfmot 0.8.1 accepts both at the end
        pruned = sparsity.prune_low_magnitude(_mobile_model(keepdims), pruning_schedule=schedule,
                                              pruning_policy=policy)
        wrapped = [layer.layer for layer in pruned.layers
                   if isinstance(layer, sparsity.PruneLowMagnitude)]
        assert [layer.kernel_size for layer in wrapped] == [(1, 1), (1, 1)]


def test_prune_for_latency_on_xnnpack_says_what_breaks_the_rules():
    policy = sparsity.PruneForLatencyOnXNNPack()
    message = _raises(ValueError, "Could not find `Conv2D 3x3` layer with stride 2x2",
                      policy.ensure_model_supports_pruning, _mobile_model(padding="same"))
    assert "padding='same', not 'valid'" in message and "not preceded" not in message
    mobilenet = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                               alpha=0.35, classes=10)
    message = _raises(ValueError, "Could not find `Conv2D 3x3`",
                      policy.ensure_model_supports_pruning, mobilenet)
    assert "Conv2D 'Conv1'" in message and "padding='same'" in message
    message = _raises(ValueError, "Layer MaxPooling2D is not supported",
                      policy.ensure_model_supports_pruning,
                      _mobile_model(extra=[L.MaxPooling2D()]))
    assert "MaxPooling2D 'max_pooling2d" in message
    no_end = keras.Sequential([keras.Input((32, 32, 3)), L.ZeroPadding2D(1),
                               L.Conv2D(8, 3, strides=2), L.Flatten(), L.Dense(2)])
    _raises(ValueError, "Could not find a `GlobalAveragePooling2D` layer in all output branches",
            policy.ensure_model_supports_pruning, no_end)
    _raises(ValueError, "Unbuilt models are not supported currently",
            policy.ensure_model_supports_pruning, keras.Sequential([L.Dense(2)]))

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    _raises(ValueError, "Subclassed models are not supported currently",
            policy.ensure_model_supports_pruning, Subclassed())
