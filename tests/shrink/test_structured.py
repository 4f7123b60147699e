"""`Units` + `shrink` on CNN blocks: residual Add, Concatenate, SE gates, depthwise, BN."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import strategies
from tfprune import shrink
from tfprune import find_wrappers

L = keras.layers


# ------------------------------------------------------------------ helpers
def _trained_like(model, seed=0):
    """Non-trivial BN statistics and biases, as after training: a pruned
    channel then carries a non-zero constant."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([1 + 0.2 * rng.normal(size=n), 0.3 * rng.normal(size=n),
                               0.3 * rng.normal(size=n), np.exp(0.3 * rng.normal(size=n))])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(0.1 * rng.normal(size=layer.bias.shape))
    return model


def _units_prune(model, sparsity=0.5):
    """Applies the `Units` masks of the "dense" preset (output layer
    protected) to `model`'s weights."""
    plan = strategies.dense(units=True, protect_outputs=True).plan(model)
    for pw, mask in zip(plan.weights, plan.compute_masks(sparsity)):
        pw.variable.assign(pw.variable * mask)
    return model


def _max_error(model, small, rng):
    """Largest difference of the outputs on a random batch, relative to the
    largest output when that is above 1 (shrink's own tolerance)."""
    x = rng.normal(size=(3,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    ref = keras.ops.convert_to_numpy(model(x, training=False))
    err = np.max(np.abs(ref - keras.ops.convert_to_numpy(small(x, training=False))))
    return float(err / max(1.0, np.max(np.abs(ref))))


def _named(model, name):
    return next(layer for layer in model.layers if layer.name == name)


def _kept_units(model, name):
    kernel = keras.ops.convert_to_numpy(_named(model, name).kernel)
    return np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)


def _filters(model, name):
    return _named(model, name).kernel.shape[-1]


def residual():
    x = keras.Input((8, 8, 3))
    a = L.ReLU()(L.BatchNormalization()(L.Conv2D(6, 3, padding="same", name="stem")(x)))
    b = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 1, name="branch")(a)))
    b = L.BatchNormalization()(L.Conv2D(6, 3, padding="same", name="branch_out")(b))
    y = L.ReLU()(L.Add()([a, b]))
    b = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", name="branch2")(y)))
    b = L.BatchNormalization()(L.Conv2D(6, 1, name="branch2_out")(b))
    y = L.ReLU()(L.Add()([y, b]))
    return keras.Model(x, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(y)))


def squeeze_excitation():
    x = keras.Input((8, 8, 3))
    e = L.Activation("swish")(L.BatchNormalization()(L.Conv2D(8, 1, name="expand")(x)))
    d = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(e)
    d = L.Activation("swish")(L.BatchNormalization()(d))
    s = L.Reshape((1, 1, 8))(L.GlobalAveragePooling2D()(d))
    s = L.Conv2D(4, 1, activation="swish", name="se_reduce")(s)
    s = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(s)
    y = L.Multiply()([d, s])
    y = L.BatchNormalization()(L.Conv2D(6, 1, name="project")(y))
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(y)))


def dense_block():
    """DenseNet: every layer reads the concatenation of all before it."""
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, padding="same", name="stem")(x)
    for i in range(2):
        z = L.ReLU()(L.BatchNormalization()(y))
        z = L.Conv2D(6, 1, name=f"bottleneck{i}")(z)
        z = L.Conv2D(2, 3, padding="same", name=f"grow{i}")(L.ReLU()(L.BatchNormalization()(z)))
        y = L.Concatenate()([y, z])
    y = L.Conv2D(4, 1, name="transition")(L.ReLU()(L.BatchNormalization()(y)))
    return keras.Model(x, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(y)))


# ------------------------------------------------------------ CNN blocks
@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "trained_like"])
def test_residual_channels_go_together(rng, fresh):
    model = residual() if fresh else _trained_like(residual())
    _units_prune(model)
    small, report = shrink(model, return_report=True)
    kept = _kept_units(model, "stem")
    for name in ("branch_out", "branch2_out"):
        np.testing.assert_array_equal(_kept_units(model, name), kept)
    # Trained, dead channels are non-zero constants; where a 3x3 "same" conv
    # reads them (the residual stream, the output of "branch"), one of them
    # stays to carry the others.
    carrier = 0 if fresh else 1
    stream = 3 + carrier
    assert [_filters(small, n) for n in ("stem", "branch_out", "branch2_out")] == [stream] * 3
    assert [_filters(small, n) for n in ("branch", "branch2")] == [2 + carrier, 2]
    assert _named(small, "head").kernel.shape == (stream, 3)
    assert report.removed_units == 3 * (6 - stream) + (2 - carrier) + 2
    assert _max_error(model, small, rng) <= 1e-5


def test_squeeze_excitation_and_depthwise_channels_go_together(rng):
    model = _units_prune(_trained_like(squeeze_excitation()))
    small = shrink(model)
    # The depthwise kernel is pruned with its channels: nothing needs a carrier.
    assert [_filters(small, n) for n in ("expand", "se_reduce", "se_expand", "project")] == \
        [4, 2, 4, 3]
    assert _named(small, "dw").kernel.shape == (3, 3, 4, 1)
    assert _max_error(model, small, rng) <= 1e-5


@pytest.mark.tensorflow_only  # the counts below follow TensorFlow's random initial weights
def test_dense_block_concatenations_lose_rows_at_their_offsets(rng):
    model = _units_prune(_trained_like(dense_block()))
    small = shrink(model)
    # 4 + 2 + 2 channels concatenated, half of each producer's removed; the
    # bottlenecks keep a carrier for the 3x3 "same" conv after them.
    assert [_filters(small, n) for n in ("stem", "grow0", "grow1")] == [2, 1, 1]
    assert [_filters(small, n) for n in ("bottleneck0", "bottleneck1")] == [4, 4]
    assert _named(small, "bottleneck1").kernel.shape == (1, 1, 3, 4)
    assert _named(small, "transition").kernel.shape == (1, 1, 4, 2)
    assert _max_error(model, small, rng) <= 1e-5


def test_pruned_through_the_callback_then_stripped_and_shrunk(rng):
    model = _trained_like(residual())
    pruned = tfprune.prune(model, tfprune.schedules.Constant(0.5),
                           strategy=strategies.dense(units=True, protect_outputs=True))
    pruned.compile("sgd", "mse")
    x = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    pruned.fit(x, np.zeros((8, 3), "float32"), epochs=1, verbose=0,
               callbacks=[tfprune.PruningCallback()])
    final = tfprune.strip(pruned)
    small = shrink(final)
    assert not find_wrappers(small)
    assert _filters(small, "stem") == _filters(small, "branch_out") == 4  # with a carrier
    assert _filters(small, "branch") == 3
    assert small.count_params() < final.count_params() * 0.6
    assert _max_error(final, small, rng) <= 1e-5


# ------------------------------------------------------------- depthwise
def test_depthwise_channel_with_a_zero_kernel_takes_its_input_channel(rng):
    x = keras.Input((6, 6, 2))
    y = L.Conv2D(4, 1, activation="relu", name="c")(x)
    dw = L.DepthwiseConv2D(3, padding="same", name="dw")
    model = keras.Model(x, L.Conv2D(2, 1, name="out")(dw(y)))
    kernel, bias = dw.get_weights()
    kernel[..., 1, :] = 0  # channel 1: the bias, whatever the live input
    dw.set_weights([kernel, bias + 0.5])
    small = shrink(model)
    assert _filters(small, "c") == 3
    assert _named(small, "dw").kernel.shape == (3, 3, 3, 1)
    assert _max_error(model, small, rng) <= 1e-5


@pytest.mark.parametrize("padding,constant,removed", [
    ("valid", 0.7, True),  # folded: v * sum(kernel) + bias everywhere
    ("same", 0.0, True),  # zero stays zero, padding or not
    ("same", 0.7, False),  # the border sees the padding: not constant
])
def test_depthwise_constant_inputs(rng, padding, constant, removed):
    x = keras.Input((6, 6, 2))
    c = L.Conv2D(3, 1, name="c")
    y = L.DepthwiseConv2D(3, padding=padding, name="dw")(c(x))
    model = keras.Model(x, L.Dense(2, name="out")(L.Flatten()(y)))
    kernel, bias = c.get_weights()
    kernel[..., 0] = 0
    c.set_weights([kernel, np.array([constant, 0.1, -0.2], "float32")])
    small = shrink(model)
    assert _filters(small, "c") == (2 if removed else 3)
    assert _max_error(model, small, rng) <= 1e-5


# -------------------------------------------------------------- carrier
def test_constant_channels_fold_into_one_carrier_behind_padding(rng):
    x = keras.Input((6, 6, 2))
    producer = L.Conv2D(5, 1, name="p")
    y = L.ReLU()(L.BatchNormalization()(producer(x)))
    y = L.Conv2D(3, 3, padding="same", name="reader")(y)
    model = keras.Model(x, L.Dense(2, name="out")(L.Flatten()(y)))
    beta = np.array([0.5, 0.2, -0.3, 1.5, 0.1], "float32")
    model.layers[2].set_weights([np.ones(5), beta, np.zeros(5), np.ones(5)])
    kernel, _ = producer.get_weights()
    kernel[..., [0, 1, 3]] = 0  # constant channels relu(beta): 0.5, 0.2 and 1.5
    producer.set_weights([kernel, np.zeros(5, "float32")])
    small = shrink(model)
    # Channel 3 (the largest constant) stays and carries channels 0 and 1.
    assert _filters(small, "p") == 3
    assert _named(small, "reader").kernel.shape == (3, 3, 3, 3)
    assert _max_error(model, small, rng) <= 1e-5


# -------------------------------------------------------------- unknown
def test_a_layer_shrink_does_not_know_keeps_the_channels_it_touches(rng):
    x = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 1, name="a")(x)
    b = L.LayerNormalization()(L.Conv2D(6, 1, name="b")(x))
    y = L.Conv2D(4, 1, name="c")(L.Add()([a, b]))
    model = _units_prune(_trained_like(keras.Model(x, L.Dense(2, name="head")(
        L.GlobalAveragePooling2D()(y)))))
    small = shrink(model)
    assert [_filters(small, n) for n in ("a", "b", "c")] == [6, 6, 2]
    assert _max_error(model, small, rng) <= 1e-5


# ------------------------------------------------------- keras.applications
def _application(name):
    builders = {
        "MobileNetV2": lambda: keras.applications.MobileNetV2(
            weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=4,
            classifier_activation=None),
        "ResNet50": lambda: keras.applications.ResNet50(
            weights=None, input_shape=(32, 32, 3), classes=4, classifier_activation=None),
        "EfficientNetB0": lambda: keras.applications.EfficientNetB0(
            weights=None, input_shape=(32, 32, 3), classes=4, classifier_activation=None),
    }
    return builders[name]()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "EfficientNetB0"])
def test_applications_shrink_to_half_their_channels(rng, name):
    model = _units_prune(_trained_like(_application(name)))
    small, report = shrink(model, return_report=True)
    units = [(r["units_before"], r["units_after"]) for r in report.rows if r["units_before"]]
    before, after = (sum(u) for u in zip(*units))
    assert after <= 0.51 * before + 64  # ResNet50 keeps its stem (ZeroPadding) and carriers
    assert _max_error(model, small, rng) <= 1e-5
