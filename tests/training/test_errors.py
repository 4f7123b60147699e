"""Bad input: every error names the argument and ends `Received: name=...`."""

import math

import keras
import numpy as np
import pytest

import tfprune
from tfprune import schedules

L = keras.layers


def _model():
    return keras.Sequential([keras.Input((4,)), L.Dense(3, name="hidden"), L.Dense(1, name="head")])


def _raises(error, name, fn, *args, **kwargs):
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert f"Received: {name}=" in message, message
    assert f"`{name}`" in message or f"{name}=" in message
    return message


BAD_SPARSITY = [
    (-0.1, ValueError),
    (1.0, ValueError),
    (1.5, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (True, TypeError),
    ("0.5", TypeError),
    (None, TypeError),
]


@pytest.mark.parametrize("value, error", BAD_SPARSITY, ids=lambda v: repr(v))
def test_bad_sparsity(value, error):
    _raises(error, "sparsity", tfprune.prune, _model(), value)
    _raises(error, "sparsity", tfprune.PruningWrapper, L.Dense(2), value)
    if value is not None:
        _raises(error, "sparsity", schedules.Constant, value)


@pytest.mark.parametrize("name", ["initial_sparsity", "final_sparsity"])
@pytest.mark.parametrize("value, error", BAD_SPARSITY[:-1], ids=lambda v: repr(v))
def test_bad_polynomial_sparsity(name, value, error):
    kwargs = {"initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 10}
    kwargs[name] = value
    _raises(error, name, schedules.PolynomialDecay, **kwargs)


@pytest.mark.parametrize(
    "kwargs, name, error",
    [
        ({"begin_step": 10, "end_step": 5}, "end_step", ValueError),
        ({"begin_step": -1}, "begin_step", ValueError),
        ({"end_step": -3}, "end_step", ValueError),
        ({"begin_step": 1.5}, "begin_step", TypeError),
        ({"end_step": True}, "end_step", TypeError),
        ({"power": 0}, "power", ValueError),
        ({"power": -2.0}, "power", ValueError),
        ({"power": "3"}, "power", ValueError),
        ({"initial_sparsity": 0.6, "final_sparsity": 0.5}, "final_sparsity", ValueError),
    ],
)
def test_bad_polynomial_decay(kwargs, name, error):
    args = {"initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 10}
    _raises(error, name, schedules.PolynomialDecay, **{**args, **kwargs})


def test_bad_constant_begin_step():
    _raises(ValueError, "begin_step", schedules.Constant, 0.5, begin_step=-5)


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_update_every(value, error):
    _raises(error, "update_every", tfprune.PruningCallback, update_every=value)


def test_bad_log_dir():
    _raises(TypeError, "log_dir", tfprune.PruningCallback, log_dir=3)


def test_wrapping_a_wrapper_twice():
    inner = tfprune.PruningWrapper(L.Dense(2, name="d"), 0.5)
    message = _raises(ValueError, "layer", tfprune.PruningWrapper, inner, 0.5)
    assert "already wrapped" in message


def test_wrapping_a_model_that_holds_wrappers():
    model = keras.Sequential([keras.Input((4,)), tfprune.PruningWrapper(L.Dense(2), 0.5)])
    _raises(ValueError, "layer", tfprune.PruningWrapper, model, 0.5)


def test_pruning_a_pruned_model():
    pruned = tfprune.prune(_model(), 0.5)
    message = _raises(ValueError, "model", tfprune.prune, pruned, 0.5)
    assert "already pruned" in message


def test_layer_name_that_matches_nothing():
    message = _raises(ValueError, "layers", tfprune.prune, _model(), 0.5, layers=["hidden", "nope"])
    assert "'nope'" in message and "hidden" in message


@pytest.mark.parametrize("layers", [3, [L.Dense(1)], int])
def test_layers_of_the_wrong_type(layers):
    _raises(TypeError, "layers", tfprune.prune, _model(), 0.5, layers=layers)


def test_selection_that_selects_nothing():
    _raises(ValueError, "layers", tfprune.prune, _model(), 0.5, layers=lambda layer: False)


def test_model_that_is_not_built():
    model = keras.Sequential([L.Dense(3), L.Dense(1)])
    message = _raises(ValueError, "model", tfprune.prune, model, 0.5)
    assert "built" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_at_a_mask_update(rng, bad):
    pruned = tfprune.prune(_model(), 0.5)
    pruned.compile("adam", "mse")
    kernel = next(v for v in pruned.weights if v.path.endswith("hidden/kernel"))
    kernel.assign(np.where(np.eye(4, 3) > 0, bad, kernel.numpy()).astype("float32"))
    x = rng.random((8, 4)).astype("float32")
    message = _raises(
        ValueError, "layer", pruned.fit, x, x[:, :1], verbose=0, callbacks=[tfprune.PruningCallback()]
    )
    assert "'hidden'" in message and "Received: layer=hidden" in message


@pytest.mark.parametrize("bad", [None, "model", 3, np.zeros(3), keras.optimizers.Adam()],
                         ids=["none", "str", "int", "array", "optimizer"])
@pytest.mark.parametrize("fn", [tfprune.prune, tfprune.strip, tfprune.sparsity_report],
                         ids=["prune", "strip", "sparsity_report"])
def test_not_a_model_or_layer(fn, bad):
    if fn is tfprune.sparsity_report and isinstance(bad, str):
        _raises(ValueError, "model", fn, bad)  # a path that does not exist
    elif fn is tfprune.prune:
        _raises(TypeError, "model", fn, bad, 0.5)
    else:
        _raises(TypeError, "model", fn, bad)


def test_sparsity_report_path_that_is_not_a_keras_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"")
    _raises(ValueError, "model", tfprune.sparsity_report, str(path))


def test_not_a_layer_for_the_wrapper():
    _raises(TypeError, "layer", tfprune.PruningWrapper, "dense", 0.5)


def test_layer_without_prunable_weights():
    wrapper = tfprune.PruningWrapper(L.LayerNormalization(name="norm"), 0.5)
    message = _raises(ValueError, "layer", wrapper, np.zeros((2, 4), "float32"))
    assert "no weight" in message


def test_callback_on_a_model_without_wrappers():
    model = _model()
    model.compile("adam", "mse")
    callback = tfprune.PruningCallback()
    callback.set_model(model)
    _raises(ValueError, "model", callback.on_train_begin)


def test_callback_on_a_model_without_optimizer():
    callback = tfprune.PruningCallback()
    callback.set_model(tfprune.prune(_model(), 0.5))
    message = _raises(ValueError, "model", callback.on_train_begin)
    assert "compile" in message


@pytest.mark.parametrize(
    "layer_class, weights, error, name",
    [
        (L.Dense, {}, ValueError, "weights"),
        (L.Dense, {"kernel": 0}, ValueError, "weights"),
        (L.Dense, ["kernel"], ValueError, "weights"),
        (dict, {"kernel": 1}, TypeError, "layer_class"),
        (L.Dense(1), {"kernel": 1}, TypeError, "layer_class"),
    ],
)
def test_bad_register_prunable_layer(layer_class, weights, error, name):
    _raises(error, name, tfprune.register_prunable_layer, layer_class, weights)


class Unknown(L.Layer):
    """A custom layer with a weight tfprune does not know about."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 3), name="w")

    def call(self, x):
        return x @ self.w


def test_unsupported_custom_layer_warns_and_the_rest_is_pruned(rng, check_pruned):
    model = keras.Sequential(
        [keras.Input((4,)), Unknown(name="mystery"), L.Dense(2, name="known")]
    )
    with pytest.warns(UserWarning, match=r"tfprune\.prune left these layers unpruned.*'mystery'"):
        pruned = tfprune.prune(model, 0.5)
    assert [w.layer.name for w in tfprune._training.wrapper.find_wrappers(pruned)] == ["known"]
    pruned.compile("adam", "mse")
    x = rng.random((8, 4)).astype("float32")
    pruned.fit(x, x[:, :2], verbose=0, callbacks=[tfprune.PruningCallback()])
    check_pruned(pruned, 0.5)
    assert tfprune.sparsity_report(pruned).rows[0]["layer"] == "known"


def test_callback_on_a_model_whose_wrappers_are_not_built():
    model = keras.Sequential([tfprune.PruningWrapper(L.Dense(2, name="d"), 0.5)], name="lazy")
    callback = tfprune.PruningCallback()
    callback.set_model(model)
    message = _raises(ValueError, "model", callback.on_train_begin)
    assert message.endswith("are not built; build the model (call it on data or give it an Input) "
                            "before training. Received: model=lazy")


def test_pruning_a_layer_with_nothing_to_prune():
    layer = L.LayerNormalization(name="norm")
    layer.build((None, 4))
    message = _raises(ValueError, "model", tfprune.prune, layer, 0.5)
    assert message == "Layer 'norm' has nothing tfprune can prune. Received: model=norm"


@pytest.mark.parametrize("monitor", [3, "", None])
def test_quality_guard_monitor_must_be_a_metric_name(monitor):
    message = _raises(TypeError, "monitor", tfprune.QualityGuard, monitor=monitor)
    assert message.endswith(f"`monitor` must be a metric name. Received: monitor={monitor!r}")


def test_prune_to_before_the_wrapper_is_built():
    wrapper = tfprune.PruningWrapper(L.Dense(2), 0.5, name="early")
    message = _raises(ValueError, "sparsity", wrapper.prune_to, 0.5)
    assert message.startswith("PruningWrapper 'early' is not built yet")


def test_check_finite_names_the_weight():
    wrapper = tfprune.PruningWrapper(L.Dense(2, name="d"), 0.5)
    wrapper.build((None, 3))
    wrapper.check_finite()  # finite: no error
    wrapper.layer.kernel.assign(np.full((3, 2), np.nan, "float32"))
    message = _raises(ValueError, "layer", wrapper.check_finite)
    assert "holds NaN or infinite values" in message and message.endswith("Received: layer=d")


def test_loading_weights_saved_with_another_strategy(tmp_path):
    def model():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])

    path = str(tmp_path / "magnitude.weights.h5")
    tfprune.prune(model(), 0.5).save_weights(path)
    taylor = tfprune.prune(model(), 0.5, strategy=tfprune.strategies.Strategy("taylor"))
    with pytest.raises(ValueError, match=r"expected 3 variables .* but received 2 variables .*"
                                         r"another strategy.*Received: variables=2"):
        taylor.load_weights(path)
