"""`tfprune.shrink`: dead units go, predictions stay the same."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import ShrinkReport
from tfprune._shrink import _core
from tfprune._shrink import register_surgery
from tfprune import shrink
from tfprune._base.channel_rules import _RULES
from tfprune._shrink._surgery import Identity
from tfprune import find_wrappers

L = keras.layers


# ------------------------------------------------------------------ helpers
def _kill(layer, units, bias=0.0):
    """Zeroes the kernel columns of `units` and sets their bias."""
    weights = layer.get_weights()
    weights[0][..., units] = 0
    if len(weights) > 1:
        weights[1][..., units] = bias
    layer.set_weights(weights)


def _kill_rnn(rnn, units, candidate_only=False):
    """Zeroes every gate (or only the candidate) of hidden `units` of an RNN."""
    kernel, recurrent, *bias = rnn.get_weights()
    n = rnn.cell.units
    gates = kernel.shape[1] // n
    blocks = [{4: 2, 3: 2, 1: 0}[gates]] if candidate_only else range(gates)
    for g in blocks:
        cols = [g * n + j for j in units]
        kernel[:, cols] = 0
        recurrent[:, cols] = 0
        for b in bias:
            b[..., cols] = 0
    rnn.set_weights([kernel, recurrent, *bias])


def _inputs(model, rng, int_high=None):
    out = []
    for x in model.inputs:
        shape = [3] + [7 if d is None else d for d in x.shape[1:]]
        if "int" in str(x.dtype):
            out.append(rng.integers(0, int_high, size=shape).astype(x.dtype))
        else:
            out.append(rng.normal(size=shape).astype("float32"))
    return out if len(out) > 1 else out[0]


def _max_error(model, small, rng, int_high=None):
    data = _inputs(model, rng, int_high)
    ref = keras.tree.flatten(model(data, training=False))
    new = keras.tree.flatten(small(data, training=False))
    assert [tuple(r.shape) for r in ref] == [tuple(n.shape) for n in new]
    return max(
        float(np.max(np.abs(keras.ops.convert_to_numpy(r) - keras.ops.convert_to_numpy(n))))
        for r, n in zip(ref, new)
    )


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# ---------------------------------------------------------- dense / conv
def test_dense_mlp_loses_dead_units_and_their_input_rows(rng):
    model = keras.Sequential([
        keras.Input((6,)),
        L.Dense(8, activation="relu"),
        L.Dropout(0.3),
        L.Dense(5, activation="tanh"),
        L.Dense(3),
    ])
    _kill(model.layers[0], [1, 4])
    _kill(model.layers[2], [2])
    small = shrink(model)
    assert isinstance(small, keras.Sequential)
    assert [layer.units for layer in small.layers if isinstance(layer, L.Dense)] == [6, 4, 3]
    # 6*6+6, 6*4+4, 4*3+3 instead of 6*8+8, 8*5+5, 5*3+3.
    assert small.count_params() == 42 + 28 + 15 < model.count_params() == 56 + 45 + 18
    assert _max_error(model, small, rng) <= 1e-5


@pytest.mark.parametrize("activation, bias, constant", [("relu", 0.7, 0.7), ("sigmoid", 0.0, 0.5)])
def test_constant_dead_unit_is_folded_into_the_consumer_bias(rng, activation, bias, constant):
    model = keras.Sequential([keras.Input((4,)), L.Dense(5, activation=activation), L.Dense(3)])
    _kill(model.layers[0], [2], bias=bias)
    kernel, old_bias = model.layers[1].get_weights()
    small = shrink(model)
    assert small.layers[0].units == 4
    new_kernel, new_bias = small.layers[1].get_weights()
    np.testing.assert_allclose(new_bias, old_bias + constant * kernel[2], atol=1e-6)
    np.testing.assert_array_equal(new_kernel, np.delete(kernel, 2, axis=0))
    assert _max_error(model, small, rng) <= 1e-5


def test_softmax_units_are_kept_even_when_unread(rng):
    model = keras.Sequential([keras.Input((4,)), L.Dense(5, activation="softmax"), L.Dense(3)])
    _kill(model.layers[0], [1])
    weights = model.layers[1].get_weights()
    weights[0][3] = 0  # nothing reads unit 3, but it takes part in the softmax
    model.layers[1].set_weights(weights)
    small = shrink(model)
    assert small.layers[0].units == 5
    assert small.count_params() == model.count_params()
    assert _max_error(model, small, rng) <= 1e-5


def test_output_layer_units_are_never_removed(rng):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, L.Dense(4)(L.Dense(6)(inputs)))
    _kill(model.layers[2], [0, 1])
    small = shrink(model)
    assert small.output_shape == model.output_shape == (None, 4)
    assert small.count_params() == model.count_params()
    assert _max_error(model, small, rng) <= 1e-5


def test_unread_units_go_with_their_batch_norm_channels(rng):
    inputs = keras.Input((5,))
    x = L.Dense(6, activation="relu")(inputs)
    x = L.BatchNormalization()(x)
    model = keras.Model(inputs, L.Dense(2)(x))
    weights = model.layers[3].get_weights()
    weights[0][[1, 3]] = 0  # live units that nothing downstream reads
    model.layers[3].set_weights(weights)
    small = shrink(model)
    assert small.layers[1].units == 4
    assert small.layers[2].gamma.shape == (4,)
    assert small.count_params() == 24 + 16 + 10
    assert _max_error(model, small, rng) <= 1e-5


def test_conv2d_filters_go_through_pooling_and_flatten(rng):
    inputs = keras.Input((9, 9, 3))
    x = L.Conv2D(6, 3, activation="relu")(inputs)
    x = L.MaxPooling2D(3)(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    _kill(model.layers[1], [0, 3], bias=0.4)  # relu(0.4): folded
    small = shrink(model)
    assert small.layers[1].filters == 4
    assert small.layers[1].kernel.shape == (3, 3, 3, 4)
    assert small.layers[4].kernel.shape == (2 * 2 * 4, 2)  # 7x7 pooled by 3: 2x2
    assert small.count_params() == (3 * 3 * 3 * 4 + 4) + (16 * 2 + 2)
    assert _max_error(model, small, rng) <= 1e-5


def test_conv1d_same_padding_only_drops_zero_filters(rng):
    inputs = keras.Input((10, 3))
    x = L.Conv1D(5, 3, padding="same", activation="relu")(inputs)
    x = L.Conv1D(4, 3, padding="same")(x)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling1D()(x)))
    _kill(model.layers[1], [1], bias=0.5)  # constant 0.5: padding makes it vary, kept
    _kill(model.layers[1], [3])  # constant 0: removed
    small = shrink(model)
    assert small.layers[1].filters == 4
    assert small.layers[2].kernel.shape == (3, 4, 4)
    assert _max_error(model, small, rng) <= 1e-5


def test_conv_batchnorm_relu_folds_into_a_conv_without_bias(rng):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, use_bias=False)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(4, 1, use_bias=False)(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    _kill(model.layers[1], [0, 4])
    # gamma, beta, moving mean, moving variance: BN(0) = relu(1 - 0.2) = 0.8.
    model.layers[2].set_weights([np.full(6, v, "float32") for v in (1.0, 1.0, 0.2, 1.0)])
    small = shrink(model)
    assert small.layers[1].filters == 4
    assert small.layers[4].use_bias  # BN(0) is a constant, folded into a new bias
    assert small.count_params() < model.count_params()
    assert _max_error(model, small, rng) <= 1e-5


# ------------------------------------------------------------ branches
def test_add_removes_only_units_dead_in_every_input(rng):
    inputs = keras.Input((5,))
    a, b = L.Dense(6)(inputs), L.Dense(6)(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.Add()([a, b])))
    _kill(model.layers[1], [1, 2])
    _kill(model.layers[2], [2, 3])
    small = shrink(model)
    assert [small.layers[i].units for i in (1, 2)] == [5, 5]
    np.testing.assert_array_equal(
        _np(small.layers[1].kernel), np.delete(_np(model.layers[1].kernel), 2, axis=1)
    )
    assert _max_error(model, small, rng) <= 1e-5


def test_concatenate_removes_rows_at_their_offsets(rng):
    inputs = keras.Input((5,))
    a, b = L.Dense(6)(inputs), L.Dense(6)(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.Concatenate()([a, b])))
    _kill(model.layers[1], [1])
    _kill(model.layers[2], [0, 3])
    small = shrink(model)
    assert [small.layers[i].units for i in (1, 2)] == [5, 4]
    np.testing.assert_array_equal(
        _np(small.layers[4].kernel), np.delete(_np(model.layers[4].kernel), [1, 6, 9], axis=0)
    )
    assert _max_error(model, small, rng) <= 1e-5


def test_shared_layer_loses_units_at_every_call(rng):
    dense = L.Dense(5, activation="relu")
    x1, x2 = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([x1, x2], L.Dense(2)(L.Concatenate()([dense(x1), dense(x2)])))
    _kill(dense, [1], bias=0.3)
    small = shrink(model)
    assert small.get_layer(dense.name).units == 4
    assert _max_error(model, small, rng) <= 1e-5


def test_reshape_and_nested_model(rng):
    inner = keras.Sequential([keras.Input((2, 6)), L.Dense(8, activation="relu"), L.Dense(4)])
    _kill(inner.layers[0], [0, 1])
    inputs = keras.Input((4, 6))
    x = L.Dense(6)(inputs)
    x = L.Reshape((2, 12))(x)  # each row of 12 holds the 6 channels twice
    x = L.Dense(6)(x)
    model = keras.Model(inputs, L.Dense(2)(inner(x)))
    _kill(model.layers[1], [1, 4], bias=0.3)
    small = shrink(model)
    assert small.layers[1].units == 4
    assert small.layers[2].target_shape == (2, 8)
    assert small.layers[3].kernel.shape == (8, 6)
    assert small.layers[4].layers[0].units == 6  # the nested model is shrunk too
    assert _max_error(model, small, rng) <= 1e-5


# ----------------------------------------------------------- recurrent
RNNS = [
    pytest.param(L.LSTM, {}, False, id="lstm"),
    pytest.param(L.LSTM, {}, True, id="lstm-candidate-only"),
    pytest.param(L.GRU, {}, False, id="gru"),
    pytest.param(L.GRU, {}, True, id="gru-candidate-only"),
    pytest.param(L.GRU, {"reset_after": False}, False, id="gru-reset-before"),
    pytest.param(L.GRU, {"reset_after": False}, True, id="gru-reset-before-candidate-only"),
    pytest.param(L.SimpleRNN, {}, False, id="simple-rnn"),
]


@pytest.mark.parametrize("cls, kwargs, candidate_only", RNNS)
def test_recurrent_hidden_units_are_removed_exactly(rng, cls, kwargs, candidate_only):
    """A unit whose candidate block is all zero keeps a zero state: it goes."""
    inputs = keras.Input((7, 4))
    x = cls(6, return_sequences=True, **kwargs)(inputs)
    model = keras.Model(inputs, L.Dense(2)(cls(3, **kwargs)(x)))
    _kill_rnn(model.layers[1], [1, 4], candidate_only)
    small = shrink(model)
    assert small.layers[1].units == 4
    assert small.layers[2].cell.kernel.shape[0] == 4
    assert small.count_params() < model.count_params()
    assert _max_error(model, small, rng) <= 1e-5


def test_lstm_unit_with_a_live_candidate_is_kept(rng):
    inputs = keras.Input((7, 4))
    model = keras.Model(inputs, L.Dense(2)(L.LSTM(5)(inputs)))
    kernel, recurrent, bias = model.layers[1].get_weights()
    for g in (0, 1, 3):  # every block but the candidate (2) of unit 0
        kernel[:, g * 5] = recurrent[:, g * 5] = bias[g * 5] = 0
    model.layers[1].set_weights([kernel, recurrent, bias])
    small = shrink(model)
    assert small.layers[1].units == 5
    assert _max_error(model, small, rng) <= 1e-5


def test_gru_unit_with_a_recurrent_candidate_bias_is_kept(rng):
    inputs = keras.Input((7, 4))
    model = keras.Model(inputs, L.Dense(2)(L.GRU(5, reset_after=True)(inputs)))
    _kill_rnn(model.layers[1], [0, 1])
    kernel, recurrent, bias = model.layers[1].get_weights()
    bias[1, 2 * 5 + 1] = 0.5  # recurrent bias of the candidate of unit 1: r * 0.5 != 0
    model.layers[1].set_weights([kernel, recurrent, bias])
    small = shrink(model)
    assert small.layers[1].units == 4  # unit 0 goes, unit 1 stays
    assert _max_error(model, small, rng) <= 1e-5


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_removes_units_dead_in_both_directions(rng, merge_mode):
    inputs = keras.Input((7, 4))
    x = L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode=merge_mode)(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.Bidirectional(L.GRU(3))(x)))
    bidi = model.layers[1]
    _kill_rnn(bidi.forward_layer, [0, 2])
    _kill_rnn(bidi.backward_layer, [2, 3])
    small = shrink(model)
    assert small.layers[1].forward_layer.units == small.layers[1].backward_layer.units == 4
    rows = 8 if merge_mode == "concat" else 4
    assert small.layers[2].forward_layer.cell.kernel.shape[0] == rows
    assert _max_error(model, small, rng) <= 1e-5


def test_time_distributed_dense(rng):
    inputs = keras.Input((7, 4))
    x = L.TimeDistributed(L.Dense(6, activation="tanh"))(inputs)
    model = keras.Model(inputs, L.TimeDistributed(L.Dense(3))(x))
    _kill(model.layers[1].layer, [1, 5], bias=0.3)
    small = shrink(model)
    assert small.layers[1].layer.units == 4
    assert small.layers[2].layer.kernel.shape == (4, 3)
    assert _max_error(model, small, rng) <= 1e-5


def test_embedding_dimensions_feeding_a_masked_lstm(rng):
    inputs = keras.Input((7,), dtype="int32")
    x = L.Embedding(12, 6, mask_zero=True)(inputs)
    model = keras.Model(inputs, L.Dense(1)(L.LSTM(4)(x)))
    table = model.layers[1].get_weights()[0]
    table[:, [2, 3]] = 0
    model.layers[1].set_weights([table])
    small = shrink(model)
    assert small.layers[1].output_dim == 4
    assert small.layers[2].cell.kernel.shape == (4, 16)
    assert _max_error(model, small, rng, int_high=12) <= 1e-5  # ids include 0: masked steps


# ------------------------------------------------------- what is kept
def test_layer_normalization_and_unknown_layers_keep_their_units(rng):
    class Scale(L.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((5,))
    a = L.LayerNormalization()(L.Dense(6)(inputs))
    b = Scale()(L.Dense(6)(inputs))
    model = keras.Model(inputs, L.Dense(2)(L.Concatenate()([a, b])))
    _kill(model.layers[1], [1])
    _kill(model.layers[2], [1])
    small = shrink(model)
    assert small.count_params() == model.count_params()
    assert _max_error(model, small, rng) <= 1e-5


def test_registered_surgery_lets_units_through_a_custom_layer(rng):
    class Passthrough(L.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((5,))
    model = keras.Model(inputs, L.Dense(2)(Passthrough()(L.Dense(6)(inputs))))
    _kill(model.layers[1], [1])
    assert shrink(model).count_params() == model.count_params()
    register_surgery(Passthrough, Identity())
    try:
        small = shrink(model)
    finally:
        _RULES.pop(0)
    assert small.layers[1].units == 5
    assert _max_error(model, small, rng) <= 1e-5
    with pytest.raises(TypeError, match="Received: surgery=3"):
        register_surgery(Passthrough, 3)


def test_nothing_dead_gives_an_equivalent_copy(rng):
    model = keras.Sequential([keras.Input((4,)), L.Dense(5, activation="relu"), L.Dense(2)])
    before = [w.copy() for w in model.get_weights()]
    small, report = shrink(model, return_report=True)
    assert small is not model
    assert small.count_params() == model.count_params()
    assert report.removed_units == 0
    assert _max_error(model, small, rng) <= 1e-5
    for old, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, now)


def test_input_model_is_not_modified():
    model = keras.Sequential([keras.Input((4,)), L.Dense(5), L.Dense(2)])
    _kill(model.layers[0], [0, 3])
    before = [w.copy() for w in model.get_weights()]
    shrink(model)
    assert model.layers[0].units == 5
    for old, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, now)


# ---------------------------------------------------- pruned models
def test_pruned_model_with_whole_unit_masks(rng):
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
    pruned = tfprune.prune(model, 0.25)
    wrapper = find_wrappers(pruned)[0]
    mask = np.ones((6, 8), "float32")
    mask[:, [2, 5]] = 0
    wrapper.masks[0].assign(mask)
    kernel, bias = wrapper.layer.get_weights()
    wrapper.layer.set_weights([kernel * mask, np.where(mask[0] == 0, 0.0, bias)])
    small = shrink(pruned)
    assert find_wrappers(pruned)  # still pruned: shrink works on a stripped copy
    assert not find_wrappers(small)
    assert small.layers[0].units == 6
    assert _max_error(pruned, small, rng) <= 1e-5


def test_magnitude_pruned_model_shrinks_exactly(rng):
    model = keras.Sequential([
        keras.Input((16,)), L.Dense(32, activation="relu"), L.Dense(16, activation="relu"), L.Dense(2)
    ])
    pruned = tfprune.prune(model, 0.95)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(0.95)
    final = tfprune.strip(pruned)
    small, report = shrink(final, return_report=True)
    assert report.removed_units > 0
    assert small.count_params() < final.count_params()
    assert _max_error(final, small, rng) <= 1e-5


# ------------------------------------------------- report, save, errors
def test_report_lists_units_and_parameters():
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, name="hidden"), L.Dense(3, name="out")])
    _kill(model.layers[0], [1, 4])
    small, report = shrink(model, return_report=True)
    assert isinstance(report, ShrinkReport)
    assert report["hidden"]["units_before"] == 8 and report["hidden"]["units_after"] == 6
    assert report["out"]["params_after"] == 6 * 3 + 3
    assert report.params_after == small.count_params() < report.params_before
    assert report.removed_units == 2
    assert report.max_abs_error <= 1e-5
    assert "8 -> 6" in str(report) and "hidden" in str(report)
    assert report.to_dict()["params_before"] == model.count_params()


def test_shrunk_model_saves_and_loads(tmp_path, rng):
    inputs = keras.Input((5,))
    model = keras.Model(inputs, L.Dense(2)(L.Dense(7, activation="tanh")(inputs)))
    _kill(model.layers[1], [3, 4])
    small = shrink(model)
    small.save(tmp_path / "small.keras")
    loaded = keras.models.load_model(tmp_path / "small.keras")
    assert loaded.count_params() == small.count_params()
    assert _max_error(small, loaded, rng) == 0.0


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match=r"Functional API.*Received: model=net$"):
        shrink(net)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="Received: model=3"):
        shrink(3)
    with pytest.raises(TypeError, match="Received: model="):
        shrink(L.Dense(2))
    model = keras.Sequential([keras.Input((2,)), L.Dense(2)])
    with pytest.raises(TypeError, match="Received: return_report='yes'"):
        shrink(model, return_report="yes")


def test_a_shrunk_model_that_differs_is_never_returned(monkeypatch):
    model = keras.Sequential([keras.Input((4,)), L.Dense(5), L.Dense(2)])
    monkeypatch.setattr(_core, "_TOLERANCE", -1.0)
    with pytest.raises(ValueError, match=r"could not keep model .*Received: model=sequential"):
        shrink(model)
