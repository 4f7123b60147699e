import json

import keras
import numpy as np
import pytest

from tfprune import granularity as gr
from tfprune._base import walk
from tfprune.strategies import unit_groups


def np_(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def zeros(mask):
    return int(np.sum(np_(mask) == 0))


def scores(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


@pytest.mark.parametrize(
    "obj", [gr.Unstructured(), gr.Block((2, 2), reduction="sum"), gr.NM(1, 4, axis="output"),
            gr.NM(2, 8, axis=0), gr.Units(reduction="mean")],
)
def test_config_round_trip(obj):
    config = obj.get_config()
    assert type(obj).from_config(config) == obj
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    assert keras.saving.deserialize_keras_object(serialized) == obj


# ----------------------------------------------------------- unstructured
@pytest.mark.parametrize("shape", [(7,), (10, 6), (3, 3, 4, 5)])
@pytest.mark.parametrize("sparsity", [0.0, 0.13, 0.5, 0.9, 0.99])
def test_unstructured_prunes_exactly_round_n_s(shape, sparsity):
    s = scores(shape)
    mask = np_(gr.Unstructured().mask(s, sparsity))
    assert mask.shape == shape
    assert zeros(mask) == round(s.size * sparsity)
    if 0 < zeros(mask) < s.size:  # the lowest scores are the ones pruned
        assert s[mask == 0].max() < s[mask == 1].min()


def test_unstructured_breaks_ties_toward_the_lowest_index():
    mask = np_(gr.Unstructured().mask(np.ones((2, 3)), 0.5))
    np.testing.assert_array_equal(mask, [[0, 0, 0], [1, 1, 1]])


def test_unstructured_gates_get_their_own_threshold():
    s = scores((5, 12))
    s[:, :3] *= 100  # gate 0 is much larger: a single threshold would spare it
    mask = np_(gr.Unstructured().mask(s, 0.4, gates=4))
    for g in range(4):
        assert zeros(mask[:, 3 * g: 3 * g + 3]) == round(15 * 0.4)


def test_unstructured_respects_the_previous_mask():
    s = scores((6, 6))
    prev = np.ones((6, 6), "float32")
    prev[0, :] = 0  # the top-scoring weights were pruned before
    s[0, :] = 10.0
    mask = np_(gr.Unstructured().mask(s, 0.5, prev))
    assert np.all(mask <= prev)
    assert zeros(mask) == 18
    # Asking for less than already pruned keeps what was pruned.
    assert zeros(gr.Unstructured().mask(s, 0.05, prev)) == 6


# ------------------------------------------------------------------ block
def test_block_prunes_whole_blocks_of_input_rows():
    s = scores((8, 3))
    mask = np_(gr.Block((4, 1)).mask(s, 0.5))
    blocks = mask.reshape(2, 4, 3)
    assert np.all((blocks.min(axis=1) == blocks.max(axis=1)))  # constant per block
    assert zeros(mask) == 4 * round(6 * 0.5)
    block_means = s.reshape(2, 4, 3).mean(axis=1)
    pruned = blocks[:, 0, :] == 0
    assert block_means[pruned].max() < block_means[~pruned].min()


def test_block_edges_are_partial_blocks_counted_like_the_others():
    s = np.ones((10, 2), "float32")
    s[8:, 0] = 0.0  # the partial edge block of column 0 scores lowest
    mask = np_(gr.Block((4, 1)).mask(s, 1 / 6))
    assert zeros(mask) == 2  # round(6 blocks * 1/6) = 1 block, of 2 weights
    np.testing.assert_array_equal(mask[8:, 0], [0, 0])


def test_block_reduction_sum_favors_pruning_partial_blocks():
    s = np.full((6, 1), 1.0, "float32")
    s[4:] = 1.5  # partial block: mean 1.5 > 1.0, sum 3.0 < 4.0
    by_mean = np_(gr.Block((4, 1)).mask(s, 0.5))
    by_sum = np_(gr.Block((4, 1), reduction="sum").mask(s, 0.5))
    assert zeros(by_mean[:4]) == 4 and zeros(by_sum[4:]) == 2


def test_block_respects_previous_and_gates():
    s = scores((8, 4))
    prev = np_(gr.Block((4, 1)).mask(s, 0.25))
    mask = np_(gr.Block((4, 1)).mask(scores((8, 4), seed=1), 0.5, prev))
    assert np.all(mask <= prev) and zeros(mask) == 16
    gated = np_(gr.Block((4, 1)).mask(s, 0.5, gates=2))
    assert zeros(gated[:, :2]) == zeros(gated[:, 2:]) == 8


def test_block_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"Received: block_shape=\(0, 1\)$"):
        gr.Block((0, 1))
    with pytest.raises(ValueError, match=r"Received: shape=\(5,\)$"):
        gr.Block((4, 1)).mask(np.ones((5,)), 0.5)


# --------------------------------------------------------------------- N:M
def _groups_along_input(mask, m):
    moved = np.moveaxis(mask, -2, -1)
    return moved.reshape(-1, m)


@pytest.mark.parametrize("shape", [(16, 5), (3, 3, 8, 4)])
def test_nm_follows_the_schedule_and_ends_exactly_n_m(shape):
    nm = gr.NM(2, 4)
    s = scores(shape)
    previous, last_sparsity = None, 0.0
    for sparsity in [0.0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5]:
        mask = np_(nm.mask(s, sparsity, previous))
        if previous is not None:
            assert np.all(mask <= previous)
        actual = zeros(mask) / mask.size
        assert actual >= last_sparsity and abs(actual - sparsity) <= 1 / mask.size + 1e-9
        groups = _groups_along_input(mask, 4)
        assert np.all(groups.sum(axis=1) >= 2)  # every group at least N:M
        previous, last_sparsity = mask, actual
    groups = _groups_along_input(previous, 4)
    np.testing.assert_array_equal(groups.sum(axis=1), np.full(len(groups), 2.0))
    # Within each group the two weakest went.
    sgroups = _groups_along_input(s, 4)
    kept_min = np.where(groups == 1, sgroups, np.inf).min(axis=1)
    pruned_max = np.where(groups == 0, sgroups, -np.inf).max(axis=1)
    assert np.all(pruned_max < kept_min)


def test_nm_turns_the_cheapest_groups_first():
    s = np.array([[5.0], [6.0], [7.0], [8.0], [0.1], [0.2], [9.0], [9.0]], "float32")
    mask = np_(gr.NM(2, 4).mask(s, 0.25))  # one group of two turned
    np.testing.assert_array_equal(mask.ravel(), [1, 1, 1, 1, 0, 0, 1, 1])


def test_nm_partial_groups_keep_at_most_n():
    s = scores((11, 2))
    mask = np_(gr.NM(2, 4).mask(s, 0.5))
    for col in range(2):
        np.testing.assert_array_equal(
            [mask[0:4, col].sum(), mask[4:8, col].sum(), mask[8:, col].sum()], [2, 2, 2]
        )


def test_nm_output_axis_and_limits():
    mask = np_(gr.NM(1, 2, axis="output").mask(scores((3, 6)), 0.5))
    np.testing.assert_array_equal(mask.reshape(3, 3, 2).sum(axis=-1), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"at most 0.5\. Received: sparsity=0.6$"):
        gr.NM(2, 4).mask(scores((8, 2)), 0.6)
    with pytest.raises(ValueError, match=r"Received: n=4, m=4$"):
        gr.NM(4, 4)


# ------------------------------------------------------------------ units
def test_units_prune_whole_columns_exactly():
    s = scores((4, 10))
    mask = np_(gr.Units().mask(s, 0.3))
    pruned = np.where(mask.max(axis=0) == 0)[0]
    assert len(pruned) == 3 and np.all(mask[:, pruned] == 0)
    assert set(pruned) == set(np.argsort(s.sum(axis=0))[:3])


def _built_cell(layer, shape):
    layer(np.zeros(shape, "float32"))
    return walk.prunable_weights(layer)


@pytest.mark.parametrize("cls, gates", [(keras.layers.LSTM, 4), (keras.layers.GRU, 3)])
def test_units_span_all_gates_of_both_recurrent_kernels(cls, gates):
    units = 5
    weights = _built_cell(cls(units), (2, 3, 4))
    (group,) = unit_groups(weights)
    tensors = [w.variable.value for w in weights]
    s = [np.abs(np_(t)) for t in tensors]
    masks = gr.Units().group_masks(group, s, 0.4)
    kernel, recurrent = np_(masks[0]), np_(masks[1])
    dead = [j for j in range(units) if kernel[:, j].max() == 0]
    assert len(dead) == 2
    for j in dead:
        cols = [j + g * units for g in range(gates)]
        assert np.all(kernel[:, cols] == 0) and np.all(recurrent[:, cols] == 0)
        assert np.all(recurrent[j, :] == 0)  # nor does it feed the other units
    alive = [j for j in range(units) if j not in dead]
    assert np.all(kernel[:, alive] == 1)
    # The decision combines both tensors: it is the lowest total score.
    per_unit = s[0].reshape(-1, gates, units).sum(axis=(0, 1)) + s[1].reshape(
        -1, gates, units).sum(axis=(0, 1)) + s[1].sum(axis=1)
    assert set(dead) == set(np.argsort(per_unit)[:2])


def test_unit_scores_combine_the_tensors_of_a_group():
    # Kernel alone would prune unit 0; recurrent kernel makes unit 1 the weakest.
    k = np.array([[1.0, 2.0]], "float32")
    r = np.array([[9.0, 0.0], [0.0, 0.0]], "float32")
    group = gr.UnitGroup("cell", (gr.UnitSlice(0), gr.UnitSlice(1)))
    masks = gr.Units().group_masks(group, [k, r], 0.5)
    np.testing.assert_array_equal(np_(masks[0]), [[1.0, 0.0]])


def test_units_prune_attention_heads_in_all_four_kernels():
    mha = keras.layers.MultiHeadAttention(num_heads=4, key_dim=3)
    x = np.zeros((1, 5, 6), "float32")
    mha(x, x)
    weights = walk.prunable_weights(mha)
    (group,) = unit_groups(weights, mha)
    masks = gr.Units().group_masks(group, [np.abs(np_(w.variable.value)) for w in weights], 0.5)
    q, k, v, o = (np_(masks[i]) for i in range(4))
    dead = [h for h in range(4) if q[:, h, :].max() == 0]
    assert len(dead) == 2
    for h in dead:
        assert np.all(k[:, h, :] == 0) and np.all(v[:, h, :] == 0) and np.all(o[h] == 0)
    assert zeros(q) == q.size // 2 and zeros(o) == o.size // 2


def test_units_respect_previous_masks_and_report_items():
    s = scores((3, 6))
    first = np_(gr.Units().mask(s, 1 / 3))
    second = np_(gr.Units().mask(scores((3, 6), seed=2), 0.5, first))
    assert np.all(second <= first) and zeros(second) == 9
    group = gr.UnitGroup("t", (gr.UnitSlice(0),))
    item_scores, sizes = gr.Units().item_scores(group, [s], [first])
    assert np.sum(np.isinf(item_scores)) == 2 and np.all(sizes == 3)


def test_get_resolves_names():
    assert gr.get("2:4") == gr.NM(2, 4)
    assert gr.get("units") == gr.Units()
    with pytest.raises(ValueError, match=r"Received: granularity='channels'$"):
        gr.get("channels")
    with pytest.raises(TypeError, match=r"Received: granularity=None$"):
        gr.get(None)


def test_unscored_slices_are_masked_but_do_not_vote():
    kernel = np.array([[1.0, 2.0, 3.0]], "float32")
    bias = np.array([100.0, 0.0, 0.0], "float32")  # would save unit 0 if it were scored
    group = gr.UnitGroup("cell", (gr.UnitSlice(0), gr.UnitSlice(1, scored=False)))
    masks = gr.Units().group_masks(group, [kernel, bias], 1 / 3)
    np.testing.assert_array_equal(np_(masks[0]), [[0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(np_(masks[1]), [0.0, 1.0, 1.0])
    item_scores, sizes = gr.Units().item_scores(group, [kernel, bias])
    np.testing.assert_array_equal(item_scores, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(sizes, [1.0, 1.0, 1.0])


_AS = {
    "keras_variable": keras.Variable,
    "backend_variable": lambda a: keras.Variable(a).value,  # a tf.Variable
    "list": lambda a: a.tolist(),
}


@pytest.mark.parametrize("make", list(_AS.values()), ids=list(_AS))
@pytest.mark.parametrize(
    "granularity", [gr.Unstructured(), gr.Block((2, 1)), gr.NM(2, 4), gr.Units()],
    ids=lambda g: type(g).__name__,
)
def test_scores_and_previous_masks_may_be_variables(make, granularity):
    s = scores((8, 4))
    previous = np.ones((8, 4), "float32")
    previous[:2] = 0.0  # two rows pruned before: every granularity keeps them pruned
    expected = np_(granularity.mask(s, 0.5, previous))
    np.testing.assert_array_equal(np_(granularity.mask(make(s), 0.5, make(previous))), expected)
    group = gr.UnitGroup("t", (gr.UnitSlice(0),))
    item_scores, _ = granularity.item_scores(group, [make(s)], [make(previous)])
    np.testing.assert_array_equal(item_scores, granularity.item_scores(group, [s], [previous])[0])


@pytest.mark.parametrize("make", list(_AS.values()), ids=list(_AS))
def test_criteria_and_penalties_accept_variables(make):
    from tfprune import criteria

    w = scores((4, 3)) - 0.5
    mask = (scores((4, 3), seed=3) > 0.5).astype("float32")
    for c in [criteria.Magnitude(), criteria.Random(3), criteria.L1Norm(), criteria.L2Norm()]:
        np.testing.assert_array_equal(np_(c.score(make(w), step=2)), np_(c.score(w, step=2)))
    for c in [criteria.Taylor(), criteria.Movement()]:
        state = c.accumulate(make(np.zeros_like(w)), make(w), make(w))
        np.testing.assert_array_equal(np_(state), np_(c.accumulate(np.zeros_like(w), w, w)))
        np.testing.assert_array_equal(np_(c.score(make(w), make(np_(state)))), np_(state))
    for penalty in [criteria.L1Regularizer(0.5), criteria.GroupLasso(0.5)]:
        assert float(penalty(make(w), make(mask))) == pytest.approx(float(penalty(w, mask)))
