"""Pure mask math: exact counts, deterministic ties, monotone masks, gates."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune._masks import core as _mask_math
from tfprune._base import backend


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.parametrize(
    "size, sparsity, expected",
    [(10, 0.25, 2), (10, 0.35, 4), (1000, 0.9, 900), (7, 0.5, 4), (3, 0.0, 0), (1, 0.6, 1)],
)
def test_num_pruned_is_round_of_n_times_s(size, sparsity, expected):
    assert _mask_math.num_pruned(size, sparsity) == expected == round(size * sparsity)


@pytest.mark.parametrize("shape", [(37,), (6, 7), (3, 3, 2, 5), (2, 1, 1, 9)])
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.33, 0.5, 0.77, 0.95])
def test_magnitude_mask_prunes_exactly_round_n_s_lowest(rng, shape, sparsity):
    weights = rng.normal(size=shape).astype("float32")
    mask = _np(_mask_math.magnitude_mask(weights, sparsity))
    k = round(weights.size * sparsity)
    assert mask.shape == shape
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert int((mask == 0).sum()) == k
    # The pruned weights are the k smallest magnitudes.
    order = np.argsort(np.abs(weights).ravel(), kind="stable")
    assert set(np.flatnonzero(mask.ravel() == 0)) == set(order[:k])


def test_ties_prune_the_lowest_flat_index_first():
    mask = _np(_mask_math.magnitude_mask(np.ones((3, 4), "float32"), 0.5))
    assert mask.ravel().tolist() == [0.0] * 6 + [1.0] * 6


def test_ties_with_negatives_compare_magnitudes():
    weights = np.array([2.0, -1.0, 1.0, 3.0, -1.0, 1.0], "float32")
    mask = _np(_mask_math.magnitude_mask(weights, 0.5))
    # Four weights tie at |1|; the two with the lowest indices (1, 2) go,
    # and the third pruned slot belongs to index 4.
    assert mask.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]


def test_ties_are_deterministic_across_calls(rng):
    weights = rng.integers(-2, 3, size=(16, 16)).astype("float32")
    masks = [_np(_mask_math.magnitude_mask(weights, 0.6)) for _ in range(3)]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    assert int((masks[0] == 0).sum()) == round(256 * 0.6)


def test_lowest_k_mask_per_row():
    scores = np.array([[3.0, 1.0, 2.0, 1.0], [0.0, 5.0, 5.0, 5.0]], "float32")
    mask = _np(_mask_math.lowest_k_mask(scores, 2))
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]


def test_pruned_weight_stays_pruned_when_sparsity_rises(rng):
    weights = rng.normal(size=(8, 8)).astype("float32")
    previous = _np(_mask_math.magnitude_mask(weights, 0.3))
    # The pruned weights now have the largest magnitudes: without the
    # previous mask they would all be kept.
    grown = np.where(previous == 0, 100.0, weights).astype("float32")
    mask = _np(_mask_math.magnitude_mask(grown, 0.6, previous_mask=previous))
    assert int((mask == 0).sum()) == round(64 * 0.6)
    assert np.all(mask[previous == 0] == 0)


def test_previous_mask_sparser_than_target_is_kept(rng):
    weights = rng.normal(size=(10, 10)).astype("float32")
    previous = _np(_mask_math.magnitude_mask(weights, 0.7))
    mask = _np(_mask_math.magnitude_mask(weights, 0.4, previous_mask=previous))
    np.testing.assert_array_equal(mask, previous)


@pytest.mark.parametrize("n", [300, 20_000])  # radix rows, bracketed rows
@pytest.mark.parametrize("nan", [False, True])
def test_a_mask_that_cannot_change_is_kept_as_it_is(rng, n, nan):
    # Rows equally sparse and nothing more to prune: the update keeps the
    # mask (one pass over it) and gives what the full selection gives.
    scores = rng.random((2, n)).astype("float32")
    previous = _np(_mask_math.lowest_k_mask(scores, n // 3))
    grown = np.where(previous == 0, 100.0, scores).astype("float32")
    if nan:
        grown[:, ::7] = np.nan
    for k in (0, n // 5, n // 3):
        mask = _np(_mask_math.lowest_k_mask(grown, k, previous_mask=previous))
        np.testing.assert_array_equal(mask, previous)
        full = _np(_mask_math._select(np.where(previous > 0, grown, -np.inf).astype("float32"),
                                      keras.ops.convert_to_tensor(n // 3)))
        np.testing.assert_array_equal(full, previous)
    # Rows of unequal sparsity are evened out: the selection runs.
    uneven = previous.copy()
    uneven[0, np.flatnonzero(previous[0])[:5]] = 0.0
    mask = _np(_mask_math.lowest_k_mask(grown, n // 5, previous_mask=uneven))
    assert (mask == 0).sum(axis=1).tolist() == [n // 3 + 5] * 2
    assert np.all(mask[uneven == 0] == 0)


@pytest.mark.parametrize("steps", [[0.1, 0.2, 0.5, 0.8, 0.9]])
def test_masks_are_monotone_over_a_schedule(rng, steps):
    weights = rng.normal(size=(12, 20)).astype("float32")
    mask = None
    for sparsity in steps:
        weights = weights + rng.normal(scale=0.5, size=weights.shape).astype("float32")
        new = _np(_mask_math.magnitude_mask(weights, sparsity, previous_mask=mask))
        if mask is not None:
            assert np.all(new[mask == 0] == 0)
        assert int((new == 0).sum()) == round(weights.size * sparsity)
        mask = new


@pytest.mark.parametrize("gates, shape", [(4, (5, 4 * 6)), (3, (6, 3 * 6)), (4, (6, 4 * 6))])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.85])
def test_each_gate_block_gets_its_own_threshold(rng, gates, shape, sparsity):
    units = shape[-1] // gates
    weights = rng.normal(size=shape).astype("float32")
    # Gate 0 is tiny: one global threshold would prune it entirely.
    weights[:, :units] *= 1e-3
    mask = _np(_mask_math.magnitude_mask(weights, sparsity, gates=gates))
    n_block = shape[0] * units
    for g in range(gates):
        block = mask[:, g * units : (g + 1) * units]
        assert int((block == 0).sum()) == round(n_block * sparsity), g


def test_to_groups_and_from_groups_are_inverse(rng):
    x = rng.normal(size=(2, 3, 12)).astype("float32")
    rows = _mask_math.to_groups(x, 4)
    assert tuple(rows.shape) == (4, 18)
    # Row g holds gate g's columns.
    np.testing.assert_array_equal(_np(rows)[1], x[..., 3:6].reshape(-1))
    np.testing.assert_array_equal(_np(_mask_math.from_groups(rows, x.shape, 4)), x)


def test_sparsity_of():
    assert _mask_math.sparsity_of(np.array([[0.0, 1.0], [0.0, 0.0]])) == 0.75
    assert _mask_math.sparsity_of(np.zeros((0,))) == 0.0


@pytest.mark.parametrize(
    "layer, gates",
    [(keras.layers.LSTM(6), 4), (keras.layers.GRU(6), 3)],
    ids=["lstm", "gru"],
)
def test_recurrent_wrapper_prunes_every_gate_exactly(layer, gates):
    wrapper = tfprune.PruningWrapper(layer, 0.3)
    wrapper.build((None, 4, 5))
    wrapper.prune_to(0.3)
    assert [pw.gates for pw in wrapper.pruned_weights] == [gates, gates]
    for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
        mask = mask.numpy()
        units = mask.shape[-1] // gates
        for g in range(gates):
            block = mask[:, g * units : (g + 1) * units]
            assert int((block == 0).sum()) == round(block.size * 0.3), (pw.name, g)


# ------------------------------------------------------ selection (no sort)
def _reference_mask(scores, k, previous=None):
    """Full-sort reference: per row, the k lowest (score, index) pruned."""
    scores = np.array(scores, dtype=np.float32)
    if previous is not None:
        k = max(k, int((previous == 0).sum(axis=1).max()))
        scores = np.where(previous > 0, scores, -np.inf)
    scores = np.where(np.isnan(scores), -np.inf, scores)
    mask = np.ones_like(scores)
    for r, row in enumerate(scores):
        mask[r, np.lexsort((np.arange(row.size), row))[: min(k, row.size)]] = 0.0
    return mask


def _rows(kind, rng, shape):
    if kind == "random":
        return rng.normal(size=shape)
    if kind == "few_values":  # ties everywhere, also at the k-th score
        return rng.integers(0, 3, size=shape).astype("float64")
    if kind == "descending":
        return -np.sort(rng.random(shape), axis=1)
    return np.full(shape, 0.25)  # constant


@pytest.mark.parametrize("small", [False, True], ids=["default", "tiny_sample"])
@pytest.mark.parametrize("kind", ["random", "few_values", "descending", "constant"])
def test_selection_matches_a_full_sort(rng, monkeypatch, small, kind):
    if small:  # many selection rounds on short rows: every branch runs
        monkeypatch.setattr(_mask_math, "_EXACT", 16)
        monkeypatch.setattr(_mask_math, "_SAMPLE", 8)
    for rows, n in [(1, 3000), (3, 700), (2, 41)]:
        scores = _rows(kind, rng, (rows, n)).astype("float32")
        previous = (rng.random((rows, n)) > 0.3).astype("float32")
        for k in (1, n // 3, n - 1):
            for prev in (None, previous):
                got = _np(_mask_math.lowest_k_mask(scores, k, prev))
                np.testing.assert_array_equal(got, _reference_mask(scores, k, prev))


@pytest.mark.parametrize("kind", ["random", "few_values", "descending", "constant"])
def test_both_short_row_selections_agree(rng, kind):
    # TensorFlow selects short rows with `top_k` (a tensor `k`), the other
    # backends by radix selection: the same exact masks, ties at the k-th
    # score, entries already pruned (-inf) and NaN (the lowest float) too.
    lowest = np.finfo(np.float32).min
    for rows, n in [(1, 2500), (3, 64), (2, 7)]:
        scores = _rows(kind, rng, (rows, n)).astype("float32")
        scores[rng.random((rows, n)) < 0.2] = -np.inf
        scores[rng.random((rows, n)) < 0.05] = lowest
        for k in sorted({0, 1, n // 3, n // 2, n // 2 + 1, n - 1, n}):
            want = _reference_mask(scores, k)
            radix = _np(_mask_math._short_rows_mask(scores, np.int32(k)))
            np.testing.assert_array_equal(radix, want, err_msg=f"radix {rows}x{n} k={k}")
            if backend.top_k_with_tensor_k():
                top_k = _np(_mask_math._top_k_rows_mask(scores, np.int32(k)))
                np.testing.assert_array_equal(top_k, want, err_msg=f"top_k {rows}x{n} k={k}")


@pytest.mark.parametrize("kind", ["random", "few_values", "constant"])
def test_rows_of_several_tensors_selected_together_as_one_by_one(rng, kind):
    # `lowest_k_rows`: row r is `lowest_k_mask` of row r alone, with its own
    # count and previous mask: rows that cannot change (count at or below
    # their pruned entries), rows that grow, -inf and NaN scores, ties.
    n = 300
    scores = _rows(kind, rng, (5, n)).astype("float32")
    scores[0, rng.random(n) < 0.05] = -np.inf
    scores[1, rng.random(n) < 0.05] = np.nan
    previous = (rng.random((5, n)) > np.array([0.1, 0.3, 0.5, 0.0, 0.9])[:, None])
    previous = previous.astype("float32")
    pruned = n - previous.sum(axis=1).astype(int)
    for ks in ([0, 0, 0, 0, 0], pruned, pruned + 7, [n, 1, n // 2, 3, n - 1],
               [pruned[0], pruned[1] + 1, 0, n, pruned[4] + 20]):
        ks = np.asarray(ks, "int32")
        for prev in (None, previous):
            got = _np(_mask_math.lowest_k_rows(scores, ks, prev))
            for r in range(5):
                one = _np(_mask_math.lowest_k_mask(
                    scores[r:r + 1], int(ks[r]), None if prev is None else prev[r:r + 1]))
                np.testing.assert_array_equal(got[r:r + 1], one, err_msg=f"row {r} k={ks}")


def test_unstructured_selects_tensors_of_one_size_together_as_one_by_one(rng):
    granularity = tfprune.granularity.Unstructured()
    shapes = [(10, 30), (30, 10), (7,), (4, 75), (10, 30)]
    scores = [rng.normal(size=s).astype("float32") for s in shapes]
    previous = [(rng.random(s) > 0.2).astype("float32") for s in shapes]
    previous[2] = None
    groups = [tfprune.granularity.UnitGroup(f"t{t}", (tfprune.granularity.UnitSlice(t, -1, 1),))
              for t in range(len(shapes))]
    counts = [100, 61, 3, 0, 240]
    together = granularity.masks_of_groups(groups, scores, counts, previous)
    for group, count in zip(groups, counts):
        (t, alone), = granularity.group_masks_for(group, scores, count, previous).items()
        np.testing.assert_array_equal(_np(together[t]), _np(alone), err_msg=f"tensor {t}")

    class KeepsAll(tfprune.granularity.Unstructured):  # selects its own way
        def _mask_for(self, scores, count, previous_mask, gates):
            return keras.ops.ones(tuple(scores.shape))

    kept = KeepsAll().masks_of_groups(groups, scores, counts, previous)
    assert all(np.all(_np(m) == 1.0) for m in kept.values())


def test_nan_scores_are_pruned_first():
    scores = np.array([[0.5, np.nan, 0.1, 0.7, np.nan]], "float32")
    mask = _np(_mask_math.lowest_k_mask(scores, 3))
    assert mask.tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0]]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("pruned_before", [0.0, 0.9], ids=["fresh", "ninety_percent_pruned"])
def test_selection_never_sorts_a_long_row(rng, monkeypatch, pruned_before):
    # `top_k` of 90% of a row sorts most of it: 0.5-1.4 s on 10M weights.
    # With 90% already pruned, the k-th entry is one of many ties at -inf:
    # found at the bracket value, nothing gathered (sorting those ties took
    # 10 s on 100M weights).
    sorted_sizes = []
    real_sort = _mask_math.ops.sort

    def recording_sort(x, *args, **kwargs):
        sorted_sizes.append(int(x.shape[0]))
        return real_sort(x, *args, **kwargs)

    def no_top_k(*args, **kwargs):
        raise AssertionError("lowest_k_mask must not call top_k")

    monkeypatch.setattr(_mask_math.ops, "sort", recording_sort)
    monkeypatch.setattr(_mask_math.ops, "top_k", no_top_k)
    n = 300_000
    scores = rng.normal(size=(1, n)).astype("float32")
    previous = (rng.random((1, n)) >= pruned_before).astype("float32")
    mask = _np(_mask_math.lowest_k_mask(scores, int(0.9 * n), previous))
    assert int((mask == 0).sum()) == int(0.9 * n)
    assert np.all(mask[previous == 0] == 0)
    kept = np.where(previous > 0, scores, -np.inf)
    assert mask[0, np.argmax(kept)] == 1.0
    assert sorted_sizes and max(sorted_sizes) <= max(_mask_math._EXACT, _mask_math._SAMPLE)


@pytest.mark.parametrize("make", [
    lambda a: keras.Variable(a),
    lambda a: keras.Variable(a).value,  # the backend variable (tf.Variable)
    lambda a: a.tolist(),
], ids=["keras_variable", "backend_variable", "list"])
def test_mask_math_accepts_variables_and_lists(rng, make):
    weights = rng.normal(size=(6, 4)).astype("float32")
    previous = _np(_mask_math.magnitude_mask(weights, 0.25))
    expected = _np(_mask_math.magnitude_mask(weights, 0.5, previous))
    got = _mask_math.magnitude_mask(make(weights), 0.5, make(previous))
    np.testing.assert_array_equal(_np(got), expected)
    np.testing.assert_array_equal(_np(_mask_math.as_float32(make(weights))), weights)
