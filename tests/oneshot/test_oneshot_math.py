"""One-shot methods against their formulas, in NumPy, on layers whose inputs
have outlier features (as LLM activations do)."""

import json

import keras
import numpy as np
import pytest

from tfprune.granularity import NM
from tfprune.granularity import Block
from tfprune._masks.rows import nm_mask
from tfprune._masks.rows import row_mask
from tfprune._masks.sparsegpt import small_lowest_k
from tfprune._masks.sparsegpt import sparsegpt
from tfprune.oneshot import Magnitude
from tfprune.oneshot import SparseGPT
from tfprune.oneshot import Wanda
from tfprune.oneshot import get
from tests.oneshot._reference import inputs as _inputs
from tests.oneshot._reference import sparsegpt_reference
from tests.oneshot._reference import stats as _stats
from tests.oneshot._reference import wanda_reference


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


# --------------------------------------------------------------------- tests
def test_wanda_is_its_formula():
    rng = np.random.default_rng(0)
    x = _inputs(rng, 600, 48)
    w = rng.normal(size=(48, 20)).astype("float32")
    norms, _ = _stats(x)
    new, keep, _ = Wanda(0.5).prune(w, norms)
    expected = wanda_reference(w, x, 0.5)
    np.testing.assert_array_equal(_np(keep), expected)
    np.testing.assert_array_equal(_np(new), w * expected)
    # Per output: every output unit loses exactly round(48 * 0.5) weights.
    assert (np.sum(_np(keep) == 0, axis=0) == 24).all()


def test_wanda_keeps_small_weights_on_outlier_features():
    rng = np.random.default_rng(1)
    x = _inputs(rng, 600, 32, outliers=2, scale=50.0)
    outliers = np.argsort(np.linalg.norm(x, axis=0))[-2:]
    w = rng.normal(size=(32, 8)).astype("float32")
    w[outliers] = 0.1 * np.sign(w[outliers])  # small weights, large inputs
    norms, _ = _stats(x)
    keep = _np(Wanda(0.5).prune(w, norms)[1])
    assert keep[outliers].all()
    assert not _np(Magnitude(0.5).prune(w)[1])[outliers].any()


@pytest.mark.parametrize("nm", [None, (2, 4), (1, 4)], ids=str)
def test_sparsegpt_matches_the_papers_algorithm(nm):
    rng = np.random.default_rng(2)
    x = _inputs(rng, 1000, 72)
    w = rng.normal(size=(72, 24)).astype("float32")
    _, hessian = _stats(x)
    granularity = "unstructured" if nm is None else NM(*nm)
    new, keep, _ = SparseGPT(0.6 if nm is None else None, granularity,
                             block_size=32).prune(w, hessian)
    expected_w, expected_mask = sparsegpt_reference(
        w.T, 2 / len(x) * x.astype(np.float64).T @ x, 0.6, block=32, nm=nm)
    np.testing.assert_array_equal(_np(keep), expected_mask.T)
    scale = np.abs(expected_w).max()
    np.testing.assert_allclose(_np(new), expected_w.T, atol=2e-4 * scale)
    assert (_np(new)[_np(keep) == 0] == 0).all()


def test_layer_wise_error_sparsegpt_below_wanda_below_magnitude():
    rng = np.random.default_rng(3)
    x, held_out = np.split(_inputs(rng, 2400, 96, outliers=6), 2)
    w = rng.normal(size=(96, 40)).astype("float32")
    norms, hessian = _stats(x)

    def error(method, stat):
        new = _np(method.prune(w, stat)[0])
        return float(np.sum((held_out @ w - held_out @ new) ** 2))

    for granularity in ("unstructured", NM(2, 4)):
        sparsity = 0.5 if granularity == "unstructured" else None
        magnitude = error(Magnitude(sparsity, granularity), None)
        wanda = error(Wanda(sparsity, granularity), norms)
        sgpt = error(SparseGPT(sparsity, granularity), hessian)
        assert sgpt < wanda < magnitude, (granularity, sgpt, wanda, magnitude)


def test_exact_counts_per_block_and_gate():
    rng = np.random.default_rng(4)
    x = _inputs(rng, 500, 70)
    w = rng.normal(size=(70, 4 * 6)).astype("float32")  # an LSTM kernel: 4 gates of 6
    _, hessian = _stats(x)
    keep = _np(SparseGPT(0.3, block_size=32).prune(w, hessian, gates=4)[1])
    for start in range(0, 70, 32):
        rows = keep[start:start + 32]
        for gate in range(4):
            block = rows[:, 6 * gate:6 * gate + 6]
            assert np.sum(block == 0) == round(block.size * 0.3), (start, gate)
    # Magnitude per tensor: each gate block of the kernel exactly round(n * s).
    keep = _np(Magnitude(0.3).prune(w, gates=4)[1])
    for gate in range(4):
        assert np.sum(keep[:, 6 * gate:6 * gate + 6] == 0) == round(70 * 6 * 0.3)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_nm_exact_in_every_group_with_a_partial_last_group(method):
    rng = np.random.default_rng(5)
    x = _inputs(rng, 300, 30)  # 30 = 7 groups of 4 and a partial group of 2
    w = rng.normal(size=(30, 5)).astype("float32")
    norms, hessian = _stats(x)
    cls = {"magnitude": Magnitude, "wanda": Wanda, "sparsegpt": SparseGPT}[method]
    stat = {"magnitude": None, "wanda": norms, "sparsegpt": hessian}[method]
    for n, m in [(2, 4), (1, 4), (3, 8)]:
        keep = _np(cls(granularity=NM(n, m)).prune(w, stat)[1])
        for start in range(0, 30, m):
            group = keep[start:start + m]
            assert (np.sum(group == 0, axis=0) == max(0, len(group) - n)).all(), (n, m, start)


def test_block_granularity_for_wanda_and_magnitude():
    rng = np.random.default_rng(6)
    x = _inputs(rng, 300, 32)
    w = rng.normal(size=(32, 8)).astype("float32")
    norms, _ = _stats(x)
    keep = _np(Wanda(0.5, Block((4, 1))).prune(w, norms)[1])
    blocks = keep.reshape(8, 4, 8)
    assert ((blocks == 0).all(axis=1) | (blocks == 1).all(axis=1)).all()
    assert np.sum(keep == 0) == 32 * 8 // 2


def test_row_and_nm_masks():
    scores = np.array([[5.0, 1.0, 1.0, 2.0, 0.0, 9.0]], "float32")
    assert _np(row_mask(scores, 0.5)).tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]]
    # Ties go to the lower index; a partial group of 2 under 2:4 keeps both.
    assert _np(nm_mask(scores, 2, 4)).tolist() == [[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    ties = np.array([[1.0, 1.0, 1.0, 1.0], [-np.inf, 3.0, -np.inf, 2.0]], "float32")
    assert _np(small_lowest_k(ties, 2)).tolist() == [[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]]


def test_dead_inputs_and_a_singular_hessian():
    rng = np.random.default_rng(7)
    x = _inputs(rng, 200, 16)
    x[:, 3] = 0.0  # an input never active
    x[:, 5] = x[:, 4]  # two equal inputs: XᵀX is singular
    w = rng.normal(size=(16, 6)).astype("float32")
    _, hessian = _stats(x)
    new, keep, info = SparseGPT(0.5, block_size=8).prune(w, hessian)
    assert np.isfinite(_np(new)).all()
    assert np.sum(_np(keep) == 0) == 48
    assert info["damping"] == 0.01


def test_sparsegpt_raises_on_nan_statistics():
    h = np.full((4, 4), np.nan, "float32")
    with pytest.raises(FloatingPointError, match="could not be factored"):
        sparsegpt(np.ones((4, 2), "float32"), h, 0.5)


@pytest.mark.parametrize("method", [
    Magnitude(0.7, comparison="output"), Wanda(granularity=NM(4, 8)), Wanda(0.3, Block((2, 2))),
    SparseGPT(0.6, damping=0.1, block_size=64), SparseGPT(granularity="2:4", block_size=16),
], ids=repr)
def test_methods_round_trip_their_config(method):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(method)))
    assert config["registered_name"] == f"tfprune.oneshot>{type(method).__name__}"
    restored = keras.saving.deserialize_keras_object(config)
    assert restored == method and repr(restored) == repr(method)
    assert get(config) == method


def test_get_and_defaults():
    assert get("Wanda") == Wanda() and get("sparsegpt").target == 0.5
    assert Wanda().compares == "output" and Magnitude().compares == "tensor"
    assert SparseGPT(granularity="2:4").target == 0.5 and SparseGPT().target == 0.5
    assert Wanda(granularity=NM(1, 4)).target == 0.75 and Wanda(granularity="2:4").nm == (2, 4)
