import json
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune import strategies
from tfprune import sensitivity
from tfprune import SensitivityTable


@pytest.fixture(scope="module")
def regression():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(1, name="head"),
    ])
    y = keras.ops.convert_to_numpy(model(x)) + 0.01
    return model, x, y


def weights_of(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


def test_measures_every_layer_and_restores_the_weights_exactly(regression):
    model, x, y = regression
    before = weights_of(model)
    table = sensitivity(model, (x, y), sparsities=(0.5, 0.9), metric="mae", verbose=0)
    for a, b in zip(before, weights_of(model)):
        np.testing.assert_array_equal(a, b)
    assert table.names == ["hidden", "head"]
    assert table.rows["hidden"]["n_params"] == 96 and table.rows["head"]["n_params"] == 16
    assert table.baseline == pytest.approx(0.01, abs=1e-5)
    assert table.mode == "min" and table.sparsities == [0.5, 0.9]
    for name in table.names:  # pruning hurts, more at higher sparsity
        values = table[name]
        assert table.baseline < values[0.5] <= values[0.9] + 1e-6


def test_the_metric_matches_a_manual_evaluation(regression):
    model, x, y = regression
    table = sensitivity(model, (x, y), sparsities=(0.5,), layers="head", verbose=0)
    head = model.get_layer("head")
    kernel = head.kernel.numpy()
    pruned = np.where(np.abs(kernel) >= np.sort(np.abs(kernel).ravel())[8], kernel, 0.0)
    head.kernel.assign(pruned)
    expected = float(np.mean(np.abs(y - keras.ops.convert_to_numpy(model(x)))))
    head.kernel.assign(kernel)
    assert table["head"][0.5] == pytest.approx(expected, rel=1e-5)


def test_dataset_and_callable_metric_give_the_same_table(regression):
    model, x, y = regression
    from_arrays = sensitivity(model, (x, y), sparsities=(0.8,), metric="mse", verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)

    def mse(t, p):
        return np.mean((np.asarray(t) - np.asarray(p)) ** 2)

    from_ds = sensitivity(model, ds, sparsities=(0.8,), metric=mse, verbose=0)
    assert from_ds.metric == "mse"
    for name in from_arrays.names:
        assert from_ds[name][0.8] == pytest.approx(from_arrays[name][0.8], rel=1e-5)


def test_accuracy_metric_on_a_classifier_is_maximized():
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    y = np.argmax(keras.ops.convert_to_numpy(model(x)), axis=1)
    table = sensitivity(model, (x, y), sparsities=(0.9,), metric="accuracy", verbose=0)
    assert table.mode == "max" and table.baseline == 1.0
    assert table.curve("dense")[1][1] == pytest.approx(1.0 - table["dense"][0.9])


def test_recurrent_layers_are_one_group():
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    x = np.ones((8, 3, 2), "float32")
    table = sensitivity(model, (x, np.zeros((8, 1))), sparsities=(0.5,), verbose=0)
    assert table.names == ["lstm/lstm_cell", "dense"]
    assert table.rows["lstm/lstm_cell"]["n_params"] == 2 * 16 + 4 * 16


def test_progress_bar_table_text_and_dict(regression, capsys):
    model, x, y = regression
    table = sensitivity(model, (x, y), sparsities=(0.5, 0.8), verbose=1)
    assert "4/4" in capsys.readouterr().out
    text = str(table).splitlines()
    assert "s=0.5" in text[1] and "s=0.8" in text[1]
    assert len({len(line) for line in text[1:]}) == 1  # aligned
    data = json.loads(json.dumps(table.to_dict()))
    assert SensitivityTable.from_dict(data) == table


def test_plot_writes_an_image_or_explains_the_missing_extra(regression, tmp_path, monkeypatch):
    model, x, y = regression
    table = sensitivity(model, (x, y), sparsities=(0.5,), verbose=0)
    pytest.importorskip("matplotlib")
    table.plot(str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 1000
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"tfprune\[plot\]"):
        table.plot(str(tmp_path / "t.png"))


def test_bad_arguments(regression):
    model, x, y = regression
    with pytest.raises(ValueError, match=r"Received: layers='nope'$"):
        sensitivity(model, (x, y), layers="nope", verbose=0)
    with pytest.raises(TypeError, match=r"Received: data=3$"):
        sensitivity(model, 3, verbose=0)
    with pytest.raises(ValueError, match=r"Received: metric='no_such_metric'$"):
        sensitivity(model, (x, y), metric="no_such_metric", verbose=0)
    with pytest.raises(ValueError, match=r"Received: sparsities=1\.0$"):
        sensitivity(model, (x, y), sparsities=(0.5, 1.0), verbose=0)


def test_the_table_drives_a_sensitivity_allocation(regression):
    model, x, y = regression
    table = sensitivity(model, (x, y), sparsities=(0.5, 0.8, 0.95), verbose=0)
    strategy = strategies.Strategy(allocation=strategies.SensitivityAllocation(table))
    plan = strategy.plan(model)
    masks = plan.compute_masks(0.6)
    total = sum(int(np.prod(w.variable.shape)) for w in plan.weights)
    pruned = sum(int(np.sum(np.asarray(keras.ops.convert_to_numpy(m)) == 0)) for m in masks)
    assert pruned == round(total * 0.6)


def test_attention_heads_use_the_rows_of_their_sub_layers():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((4, 8))
    h = keras.layers.MultiHeadAttention(4, 2, name="mha")(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(keras.layers.Flatten()(h)))
    x = np.random.default_rng(2).normal(size=(16, 4, 8)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x))
    table = sensitivity(model, (x, y), sparsities=(0.5, 0.75), verbose=0)
    assert table.names == ["mha/query", "mha/key", "mha/value", "mha/attention_output", "head"]
    strategy = strategies.Strategy("l2_norm", "units", strategies.SensitivityAllocation(table))
    plan = strategy.plan(model)
    assert [g.name for g in plan.groups] == ["mha", "head/kernel"]
    masks = plan.compute_masks(0.4)
    zeros = [int(np.sum(np.asarray(keras.ops.convert_to_numpy(m)) == 0)) for m in masks]
    # 4 heads of 64 weights and a head of 32: 115 weights within one head.
    assert abs(sum(zeros) - round(288 * 0.4)) <= 32
    assert zeros[0] % 16 == 0 and zeros[0] == zeros[1] == zeros[2]  # whole heads
