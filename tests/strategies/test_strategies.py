import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune import criteria
from tfprune import granularity
from tfprune import strategies
from tfprune import SensitivityTable


def np_(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def zeros(mask):
    return int(np.sum(np_(mask) == 0))


def two_input_model():
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    x = keras.layers.Dense(4, name="da")(a)
    y = keras.layers.Dense(4, name="db")(keras.layers.Dropout(0.1)(b))
    z = keras.layers.Dense(8, name="mid")(keras.layers.Concatenate()([x, y]))
    out = keras.layers.Activation("relu")(keras.layers.Dense(1, name="out")(z))
    return keras.Model([a, b], out)


def lstm_model():
    return keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.LSTM(6, name="lstm"),
        keras.layers.Dense(8, name="hidden"),
        keras.layers.Dense(1, name="head"),
    ])


def mlp():
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(12, name="d1"),
        keras.layers.Dense(10, name="d2"),
        keras.layers.Dense(1, name="head"),
    ])


TABLE = SensitivityTable("mae", "min", 1.0, [0.5], {"d1": {"n_params": 72, "values": [1.1]}})


@pytest.mark.parametrize(
    "obj",
    [
        strategies.get("dense"),
        strategies.dense(units=True),
        strategies.get("recurrent"),
        strategies.get("regression"),
        strategies.auto(units=True, protect=["emb*"]),
        strategies.Strategy(
            criteria.Movement(), granularity.NM(2, 4), strategies.PerLayer({"d*": 0.5}),
            protect=["Embedding"], protect_inputs=True, regularizer=criteria.L1Regularizer(0.1),
        ),
        strategies.Strategy("taylor", "block", strategies.SensitivityAllocation(TABLE)),
    ],
)
def test_config_round_trip(obj):
    config = obj.get_config()
    assert type(obj).from_config(config) == obj
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    assert keras.saving.deserialize_keras_object(serialized) == obj


def test_get_presets_and_errors():
    assert strategies.get("DENSE") == strategies.dense()
    assert isinstance(strategies.get(None), strategies.AutoStrategy)
    s = strategies.Strategy()
    assert strategies.get(s) is s
    with pytest.raises(ValueError, match=r"Received: strategy='sparse'$"):
        strategies.get("sparse")
    with pytest.raises(TypeError, match=r"Received: strategy=5$"):
        strategies.get(5)
    with pytest.raises(TypeError, match=r"Received: protect=\[1\]$"):
        strategies.Strategy(protect=[1])


def test_auto_picks_recurrent_for_rnn_models_and_dense_otherwise():
    assert strategies.auto().resolve(lstm_model()) == strategies.recurrent()
    assert strategies.auto().resolve(mlp()) == strategies.dense()
    assert strategies.auto(units=True).resolve(mlp()) == strategies.dense(units=True)
    # One measured best for both families: global magnitude (docs/strategies.md).
    assert strategies.get("recurrent") == strategies.get("dense")
    assert isinstance(strategies.get("dense").allocation, strategies.Global)
    assert isinstance(strategies.recurrent(units=True).allocation, strategies.Uniform)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(4, name="first")
        self.middle = keras.layers.Dense(4, name="middle")
        self.last = keras.layers.Dense(1, name="last")

    def call(self, x):
        return self.last(self.middle(self.first(x)))


def test_io_layers_of_a_multi_input_model():
    ins, outs = strategies.io_layers(two_input_model())
    assert ins == {"da", "db"} and outs == {"out"}
    assert strategies.io_layers(tfprune.prune(two_input_model(), 0.5)) == (ins, outs)
    assert strategies.io_layers(lstm_model()) == ({"lstm"}, {"head"})
    sub = _Subclassed()
    sub(np.zeros((1, 3), "float32"))
    assert strategies.io_layers(sub) == ({"first"}, {"last"})


def test_regression_protects_inputs_and_head_and_leaves_them_untouched():
    model = two_input_model()
    plan = strategies.get("regression").plan(model)
    assert sorted(plan.protected) == ["da/kernel", "db/kernel", "out/kernel"]
    masks = plan.compute_masks(0.5)
    names = [g.name for g in plan.groups]
    for name, mask in zip(names, masks):
        expected = 0 if name != "mid/kernel" else 32  # the target applies to "mid" alone
        assert zeros(mask) == expected


def test_protect_patterns_match_names_paths_and_classes():
    model = lstm_model()
    by_class = strategies.Strategy(protect=["LSTMCell"]).plan(model)
    assert by_class.protected == ["lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel"]
    by_glob = strategies.Strategy(protect=["hid*"]).plan(model)
    assert by_glob.protected == ["hidden/kernel"]


def test_recurrent_strategy_is_gate_aware():
    """One global ranking sets each tensor's sparsity; each gate block of a
    recurrent kernel then loses that fraction, below its own threshold."""
    model = lstm_model()
    plan = strategies.get("recurrent").plan(model)
    masks = [np_(m) for m in plan.compute_masks(0.5)]
    n = sum(m.size for m in masks)
    # Exact within the rounding of each gate block (4 blocks, 2 tensors).
    assert abs(sum(zeros(m) for m in masks) - round(n * 0.5)) <= 2 * 2
    for mask, pw in zip(masks[:2], plan.weights[:2]):
        weight = np.abs(pw.variable.numpy())
        blocks = [slice(gate * 6, (gate + 1) * 6) for gate in range(4)]
        assert len({zeros(mask[:, b]) for b in blocks}) == 1 and zeros(mask) > 0
        for b in blocks:
            assert weight[:, b][mask[:, b] == 0].max() <= weight[:, b][mask[:, b] == 1].min()


def test_each_tensor_at_the_target_is_gate_aware_too():
    model = lstm_model()
    masks = strategies.Strategy().plan(model).compute_masks(0.5)  # Uniform
    kernel, recurrent = np_(masks[0]), np_(masks[1])
    for gate in range(4):
        assert zeros(kernel[:, gate * 6:(gate + 1) * 6]) == 9
        assert zeros(recurrent[:, gate * 6:(gate + 1) * 6]) == 18


def test_units_strategy_removes_whole_lstm_units_but_never_output_units():
    model = lstm_model()
    plan = strategies.recurrent(units=True).plan(model)
    assert [g.name for g in plan.groups] == ["lstm/lstm_cell", "hidden/kernel", "head/kernel"]
    assert isinstance(plan.groups[2].granularity, granularity.Unstructured)
    # The cell's bias is masked with its units but not counted.
    assert plan.weights[-1].variable is model.get_layer("lstm").cell.bias
    assert plan.candidates()[0].n_params == 3 * 24 + 6 * 24
    masks = plan.compute_masks(0.5)
    kernel, bias = np_(masks[0]), np_(masks[-1])
    dead = [j for j in range(6) if kernel[:, j].max() == 0]
    assert len(dead) == 3
    for j in dead:
        gates = [j, j + 6, j + 12, j + 18]
        assert np.all(kernel[:, gates] == 0) and np.all(bias[gates] == 0)
    assert zeros(bias) == 12
    assert zeros(masks[3]) == 4  # the head: 4 of its 8 weights, not its only unit


def test_an_rnn_output_layer_is_pruned_unstructured_and_keeps_its_bias():
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4, name="gru")])
    plan = strategies.recurrent(units=True).plan(model)
    assert [g.name for g in plan.groups] == ["gru/gru_cell/kernel", "gru/gru_cell/recurrent_kernel"]
    masks = plan.compute_masks(0.5)
    assert zeros(masks[0]) == 18 and zeros(masks[-1]) == 0


@pytest.mark.parametrize("rnn", [keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN])
def test_shrink_removes_the_units_that_units_granularity_pruned(rnn):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5, 3)),
        rnn(6, name="rnn", bias_initializer="random_normal"),
        keras.layers.Dense(1, name="head"),
    ])
    plan = strategies.recurrent(units=True).plan(model)
    for pw, mask in zip(plan.weights, plan.compute_masks(0.5)):
        pw.variable.assign(pw.variable.value * keras.ops.cast(mask, pw.variable.dtype))
    small = tfprune.shrink(model)
    assert small.get_layer("rnn").units == 3
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    np.testing.assert_allclose(np_(small(x)), np_(model(x)), atol=1e-5)


def test_global_plan_prunes_the_exact_overall_count_and_respects_previous():
    model = mlp()
    plan = strategies.get("dense").plan(model)
    total = sum(int(np.prod(w.variable.shape)) for w in plan.weights)
    first = plan.compute_masks(0.3)
    assert sum(zeros(m) for m in first) == round(total * 0.3)
    second = plan.compute_masks(0.6, previous=first)
    assert sum(zeros(m) for m in second) == round(total * 0.6)
    for a, b in zip(first, second):
        assert np.all(np_(b) <= np_(a))


def test_gradient_criteria_use_the_states():
    model = mlp()
    plan = strategies.Strategy("taylor").plan(model)
    states = [np.zeros(tuple(w.variable.shape), "float32") for w in plan.weights]
    states[0][0, :] = 1.0  # only the first input row has ever mattered
    masks = plan.compute_masks(0.5, states=states)
    np.testing.assert_array_equal(np_(masks[0])[0], np.ones(12))
    assert zeros(masks[0]) == 36


def test_plans_of_plain_and_pruned_models_agree():
    model = mlp()
    pruned = tfprune.prune(model, 0.5)
    plain_plan = strategies.get("dense").plan(model)
    pruned_plan = strategies.get("dense").plan(pruned)
    assert [g.name for g in plain_plan.groups] == [g.name for g in pruned_plan.groups]
    assert [g.name for g in plain_plan.groups] == ["d1/kernel", "d2/kernel", "head/kernel"]


def test_unit_groups_of_attention_and_transposed_convolutions():
    x = keras.Input((4, 8))
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    model = keras.Model(x, keras.layers.Dense(1, name="head")(h))
    plan = strategies.dense(units=True).plan(model)
    assert [g.name for g in plan.groups] == ["mha", "head/kernel"]
    assert [s.axis for s in plan.groups[0].group.slices] == [1, 1, 1, 0]
    conv = keras.Sequential([keras.Input((5, 5, 2)), keras.layers.Conv2DTranspose(3, 2, name="up"),
                             keras.layers.Conv2D(1, 1, name="proj")])
    (up, proj) = strategies.dense(units=True).plan(conv).groups
    assert up.group.slices[0].axis == -2 and isinstance(up.granularity, granularity.Units)
    assert isinstance(proj.granularity, granularity.Unstructured)


def test_bidirectional_layers_get_one_unit_group_per_direction():
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Bidirectional(keras.layers.GRU(4)),
                              keras.layers.Dense(1)])
    plan = strategies.recurrent(units=True).plan(model)
    names = [g.name for g in plan.groups]
    assert len(names) == 3 and "forward" in names[0] and "backward" in names[1]


def test_the_default_strategy_reproduces_plain_magnitude_pruning():
    from tfprune._masks.core import magnitude_mask

    model = lstm_model()
    plan = strategies.Strategy().plan(model)
    previous = [magnitude_mask(w.variable.value, 0.3, None, w.gates) for w in plan.weights]
    masks = plan.compute_masks(0.7, previous=previous)
    for w, mask, prev in zip(plan.weights, masks, previous):
        expected = magnitude_mask(w.variable.value, 0.7, prev, w.gates)
        np.testing.assert_array_equal(np_(mask), np_(expected))


@pytest.mark.parametrize("preset", [strategies.dense, strategies.auto])
def test_unit_presets_give_every_layer_the_same_fraction_of_units(preset):
    # A ranking of units across layers emptied the widest layer of a
    # 64-256-128-10 MLP: its units are small (64 weights) and many.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(64, activation="relu", name="wide"),
        keras.layers.Dense(32, activation="relu", name="narrow"),
        keras.layers.Dense(4, name="head"),
    ])
    plan = preset(units=True).plan(model)
    assert isinstance(plan.strategy.allocation, strategies.Uniform)
    for sparsity in (0.5, 0.9):
        masks = [np_(m) for m in plan.compute_masks(sparsity)]
        for mask, units in zip(masks[:2], (64, 32)):
            alive = int(np.sum(mask.max(axis=0) > 0))
            assert alive == units - round(units * sparsity)
        assert zeros(masks[2]) == round(128 * sparsity)  # the head, weight by weight
