"""End to end over every supported layer kind: fit -> strip -> save -> load.

`run_pruning_test` is the reusable helper: each case only says how to build
a small model, what its input looks like and which tensors must be pruned.
"""

import fnmatch
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune import schedules
from tfprune._base import walk
from tfprune import PruningWrapper
from tfprune import find_wrappers


def _np(x):
    return keras.ops.convert_to_numpy(x)

L = keras.layers
FINAL = 0.6
BATCH, SAMPLES = 8, 48  # 6 steps: updates at 0, 2 and 4 (the end step)


@keras.saving.register_keras_serializable("tfprune_tests")
class TransformerBlock(L.Layer):
    """Attention + feed-forward + layer norms, with a dropout."""

    def __init__(self, dim=8, heads=2, rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.rate = dim, heads, rate
        self.attention = L.MultiHeadAttention(heads, dim // heads, name="attention")
        self.norm1 = L.LayerNormalization(name="norm1")
        self.norm2 = L.LayerNormalization(name="norm2")
        self.ff1 = L.Dense(2 * dim, activation="relu", name="ff1")
        self.ff2 = L.Dense(dim, name="ff2")
        self.dropout = L.Dropout(rate)

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)
        self.norm1.build(input_shape)
        self.ff1.build(input_shape)
        self.ff2.build(tuple(input_shape[:-1]) + (2 * self.dim,))
        self.norm2.build(input_shape)

    def call(self, x, training=None):
        x = self.norm1(x + self.attention(x, x))
        h = self.dropout(self.ff2(self.ff1(x)), training=training)
        return self.norm2(x + h)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "rate": self.rate}


@keras.saving.register_keras_serializable("tfprune_tests")
class Projection(L.Layer):
    """A user layer that names its prunable weight itself."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

    def call(self, x):
        return x @ self.w + self.b

    def get_prunable_weights(self):
        return [self.w]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _seq(shape, *layers):
    return keras.Sequential([keras.Input(shape), *layers], name="model")


def _with_head(shape, layer):
    """`layer`, flattened, then a Dense head."""
    return lambda: _seq(shape, layer(), L.Flatten(), L.Dense(1, name="head"))


def _functional(shape, fn):
    inputs = keras.Input(shape)
    return keras.Model(inputs, fn(inputs), name="model")


def _nested():
    inner = keras.Sequential(
        [keras.Input((6,)), L.Dense(8, name="a"), L.Dense(4, name="b")], name="inner"
    )
    return _functional((6,), lambda x: L.Dense(1, name="head")(inner(x)))


def _pooled(layer):
    """A functional model: `layer(x)` on (4, 8) sequences, pooled, a head."""

    def build():
        return _functional(
            (4, 8),
            lambda x: L.Dense(1, name="head")(L.GlobalAveragePooling1D()(layer()(x))),
        )

    return build


def _mha():
    attention = L.MultiHeadAttention(2, 4, name="mha")
    return lambda x: attention(x, x)


def _bn_conv():
    return _seq((6, 6, 2), L.Conv2D(4, 3, name="c"), L.BatchNormalization(name="bn"),
                L.Flatten(), L.Dense(1, name="head"))


KERNEL = ["c/kernel", "head/kernel"]
SEPARABLE = ["c/depthwise_kernel", "c/pointwise_kernel", "head/kernel"]
RNN = ["rnn/*/kernel", "rnn/*/recurrent_kernel", "head/kernel"]
ATTENTION = ["query", "key", "value", "attention_output"]

# name: (build, input shape or ("int", shape, vocabulary), expected tensors)
CASES = {
    "dense": (_with_head((6,), lambda: L.Dense(5, name="c")), (6,), KERNEL),
    "einsum_dense": (_with_head((6,), lambda: L.EinsumDense("ab,bc->ac", 5, bias_axes="c", name="c")),
                     (6,), KERNEL),
    "conv1d": (_with_head((7, 3), lambda: L.Conv1D(4, 3, name="c")), (7, 3), KERNEL),
    "conv2d": (_bn_conv, (6, 6, 2), KERNEL),
    "conv3d": (_with_head((4, 4, 4, 1), lambda: L.Conv3D(3, 2, name="c")), (4, 4, 4, 1), KERNEL),
    "conv1d_transpose": (_with_head((5, 3), lambda: L.Conv1DTranspose(4, 3, name="c")), (5, 3), KERNEL),
    "conv2d_transpose": (_with_head((4, 4, 2), lambda: L.Conv2DTranspose(3, 3, name="c")), (4, 4, 2),
                         KERNEL),
    "conv3d_transpose": (_with_head((3, 3, 3, 1), lambda: L.Conv3DTranspose(2, 2, name="c")),
                         (3, 3, 3, 1), KERNEL),
    "separable_conv1d": (_with_head((7, 3), lambda: L.SeparableConv1D(4, 3, name="c")), (7, 3),
                         SEPARABLE),
    "separable_conv2d": (_with_head((6, 6, 2), lambda: L.SeparableConv2D(4, 3, name="c")), (6, 6, 2),
                         SEPARABLE),
    "depthwise_conv1d": (_with_head((7, 4), lambda: L.DepthwiseConv1D(3, name="c")), (7, 4), KERNEL),
    "depthwise_conv2d": (_with_head((6, 6, 3), lambda: L.DepthwiseConv2D(3, name="c")), (6, 6, 3),
                         KERNEL),
    "embedding": (_with_head((5,), lambda: L.Embedding(20, 4, name="emb")), ("int", (5,), 20),
                  ["emb/embeddings", "head/kernel"]),
    # mask_zero adds a bare `NotEqual` operation to the graph and a Keras mask
    # that the wrapped LSTM must still receive.
    "embedding_masked_lstm": (
        lambda: _seq((5,), L.Embedding(20, 4, mask_zero=True, name="emb"), L.LSTM(3, name="rnn"),
                     L.Dense(1, name="head")),
        ("int", (5,), 20),
        ["emb/embeddings", "rnn/lstm_cell/kernel", "rnn/lstm_cell/recurrent_kernel", "head/kernel"]),
    "multi_head_attention": (_pooled(_mha), (4, 8),
                             [f"mha/{name}/kernel" for name in ATTENTION] + ["head/kernel"]),
    "simple_rnn": (_with_head((4, 3), lambda: L.SimpleRNN(5, name="rnn")), (4, 3), RNN),
    "lstm": (_with_head((4, 3), lambda: L.LSTM(4, name="rnn")), (4, 3), RNN),
    "gru": (_with_head((4, 3), lambda: L.GRU(4, name="rnn")), (4, 3), RNN),
    "bidirectional": (_with_head((4, 3), lambda: L.Bidirectional(L.LSTM(3), name="bi")), (4, 3),
                      [f"bi/{d}*/{w}" for d in ["forward", "backward"]
                       for w in ["kernel", "recurrent_kernel"]] + ["head/kernel"]),
    "time_distributed": (_with_head((4, 3), lambda: L.TimeDistributed(L.Dense(5, name="d"), name="td")),
                         (4, 3), ["td/d/kernel", "head/kernel"]),
    "nested_model": (_nested, (6,), ["inner/a/kernel", "inner/b/kernel", "head/kernel"]),
    "transformer_block": (_pooled(lambda: TransformerBlock(name="block")), (4, 8),
                          [f"block/attention/{name}/kernel" for name in ATTENTION]
                          + ["block/ff1/kernel", "block/ff2/kernel", "head/kernel"]),
    "user_layer": (_with_head((6,), lambda: Projection(4, name="proj")), (6,), ["proj/w", "head/kernel"]),
}


def _inputs(rng, spec, n):
    if spec[0] == "int":
        return rng.integers(0, spec[2], (n,) + spec[1])
    return rng.random((n,) + spec).astype("float32")


def _fill_unprunable(model, rng):
    """Gives every weight that must not be pruned values in [0.5, 1.5], so
    that a zero in it after training can only come from pruning."""
    pruned = {id(pw.variable) for pw in walk.prunable_weights(model)}
    for v in model.weights:
        if id(v) not in pruned and "float" in v.dtype:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))


def _zeros(v):
    value = v.numpy()
    return int(value.size - np.count_nonzero(value))


def _keras_config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def run_pruning_test(build, input_spec, expected, rng, tmp_path, check_pruned, masks_of):
    """Prunes a fresh model from `build` to FINAL and checks the whole life
    cycle: fit, sparsity of each tensor, strip, save/load of both models."""
    model = build()
    _fill_unprunable(model, rng)
    x = _inputs(rng, input_spec, SAMPLES)
    y = rng.random((SAMPLES,) + tuple(model.output_shape[1:])).astype("float32")

    pruned = tfprune.prune(model, schedules.PolynomialDecay(0.2, FINAL, 0, 4))
    pruned.compile(keras.optimizers.Adam(1e-3), "mse")
    pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False,
               callbacks=[tfprune.PruningCallback(update_every=2)])
    check_pruned(pruned, FINAL)

    # Exactly the expected tensors are pruned, each once.
    report = tfprune.sparsity_report(pruned)
    keys = [f"{r['layer']}/{r['weight']}" for r in report.rows]
    assert len(keys) == len(expected), keys
    for pattern in expected:
        assert len(fnmatch.filter(keys, f"{pattern}")) == 1, (pattern, keys)
    pruned_vars = {id(pw.variable) for w in find_wrappers(pruned) for pw in w.pruned_weights}
    assert len(pruned_vars) == len(expected)

    stripped = tfprune.strip(pruned)
    assert not find_wrappers(stripped)
    assert not any(isinstance(layer, PruningWrapper) for layer in stripped._flatten_layers())
    x_test = x[:BATCH]
    expected_out = _np(pruned(x_test))
    np.testing.assert_allclose(_np(stripped(x_test)), expected_out, rtol=1e-5, atol=1e-6)

    # Stripped weights line up with the pruned model's; pruned tensors keep
    # their exact zeros, every other weight is untouched and zero-free.
    pruned_weights = [v for v in pruned.weights if not v.path.endswith(("_mask", "pruning_step"))]
    assert len(stripped.weights) == len(pruned_weights)
    for before, after in zip(pruned_weights, stripped.weights):
        assert before.shape == after.shape
        if id(before) in pruned_vars:
            assert _zeros(after) == _zeros(before) > 0, after.path
        elif "float" in after.dtype:
            np.testing.assert_array_equal(after.numpy(), before.numpy())
            assert _zeros(after) == 0, after.path
    stripped_report = tfprune.sparsity_report(stripped)
    assert stripped_report.to_dict()["tensors"] == report.to_dict()["tensors"]

    path = tmp_path / "stripped.keras"
    stripped.save(path)
    config = json.dumps(_keras_config(path))
    assert "PruningWrapper" not in config and '"module": "tfprune' not in config
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_np(loaded(x_test)), _np(stripped(x_test)))
    assert tfprune.sparsity_report(path).to_dict()["tensors"] == report.to_dict()["tensors"]

    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_np(reloaded(x_test)), expected_out)
    masks, reloaded_masks = masks_of(pruned), masks_of(reloaded)
    assert len(reloaded_masks) == len(masks)
    for a, b in zip(masks.values(), reloaded_masks.values()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_kind_end_to_end(case, rng, tmp_path, check_pruned, masks_of):
    run_pruning_test(*CASES[case], rng, tmp_path, check_pruned, masks_of)


# ------------------------------------------------------------ forward pass
def _activate(pruned):
    """Starts a PruningCallback by hand, as a custom loop does."""
    pruned.compile(keras.optimizers.Adam(1e-3), "mse")
    callback = tfprune.PruningCallback()
    callback.set_model(pruned)
    callback.on_train_begin()
    return callback


def test_dropout_inside_a_wrapped_block_draws_new_masks(rng):
    model = _functional((4, 8), lambda x: TransformerBlock(rate=0.5, name="block")(x))
    pruned = tfprune.prune(model, 0.5)
    callback = _activate(pruned)
    x = rng.random((2, 4, 8)).astype("float32")
    first, second = _np(pruned(x, training=True)), _np(pruned(x, training=True))
    assert not np.allclose(first, second)
    if keras.backend.backend() == "tensorflow":
        traced = tf.function(lambda x: pruned(x, training=True))
        assert not np.allclose(traced(x), traced(x))
    np.testing.assert_array_equal(_np(pruned(x, training=False)), _np(pruned(x, training=False)))
    callback.on_train_end()


def test_activity_regularizer_of_inner_layer_reaches_model_losses(rng):
    dense = L.Dense(3, activity_regularizer=keras.regularizers.L2(0.1), name="d")
    model = _seq((5,), dense)
    pruned = tfprune.prune(model, 0.5)
    x = rng.random((4, 5)).astype("float32")
    reference = _np(model(x))
    assert len(model.losses) == 1
    outputs = _np(pruned(x))
    np.testing.assert_allclose(outputs, reference)
    assert len(pruned.losses) == 1
    np.testing.assert_allclose(_np(pruned.losses[0]), _np(model.losses[0]), rtol=1e-6)
    # It is also part of the training loss.
    callback = _activate(pruned)
    loss = pruned.compute_loss(x, np.asarray(outputs), np.asarray(outputs))
    np.testing.assert_allclose(_np(loss), _np(model.losses[0]), rtol=1e-5)
    callback.on_train_end()


# --------------------------------------------------------- layer selection
def _three_dense():
    def fn(x):
        return L.Dense(1, name="head")(L.Dense(6, name="b")(L.Dense(6, name="a")(x)))

    return _functional((4,), fn)


@pytest.mark.parametrize(
    "layers, pruned_names",
    [
        ("a", {"a"}),
        (["a", "head"], {"a", "head"}),
        (L.Dense, {"a", "b", "head"}),
        (lambda layer: layer.name.startswith(("b", "h")), {"b", "head"}),
        (["a", lambda layer: layer.name == "head"], {"a", "head"}),
    ],
    ids=["name", "names", "class", "predicate", "mixed"],
)
def test_layer_selection(rng, check_pruned, layers, pruned_names):
    pruned = tfprune.prune(_three_dense(), 0.5, layers=layers)
    assert {w.layer.name for w in find_wrappers(pruned)} == pruned_names
    x = rng.random((16, 4)).astype("float32")
    pruned.compile("adam", "mse")
    pruned.fit(x, x[:, :1], verbose=0, callbacks=[tfprune.PruningCallback()])
    check_pruned(pruned, 0.5)
    report = tfprune.sparsity_report(pruned)
    for name in ["a", "b", "head"]:
        assert (report[f"{name}/kernel"]["zeros"] > 0) == (name in pruned_names), name


@pytest.mark.parametrize(
    "layers, expected",
    [
        (L.Dense, {"block/ff1/kernel", "block/ff2/kernel", "head/kernel"}),
        ("ff2", {"block/ff2/kernel"}),
        (L.EinsumDense, {"block/attention/query/kernel", "block/attention/key/kernel",
                         "block/attention/value/kernel", "block/attention/attention_output/kernel"}),
    ],
    ids=["dense_class", "inner_name", "attention_only"],
)
def test_selection_inside_a_custom_block(rng, layers, expected):
    model = CASES["transformer_block"][0]()
    pruned = tfprune.prune(model, 0.5, layers=layers)
    x = rng.random((16, 4, 8)).astype("float32")
    pruned.compile("adam", "mse")
    pruned.fit(x, x[:, 0, :1], verbose=0, callbacks=[tfprune.PruningCallback()])
    report = tfprune.sparsity_report(pruned)
    assert len(report.rows) == 7
    for row in report.rows:
        name = f"{row['layer']}/{row['weight']}"
        assert row["sparsity"] == (0.5 if name in expected else 0.0), name
    stripped = tfprune.strip(pruned)
    np.testing.assert_allclose(_np(stripped(x)), _np(pruned(x)), rtol=1e-5, atol=1e-6)
