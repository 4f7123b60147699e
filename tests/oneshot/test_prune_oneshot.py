"""`tfprune.prune_oneshot` on models: sequential calibration, wrapped results
whose masks fine-tuning keeps, in-place pruning, protection, data forms."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune._masks.core import magnitude_mask
from tfprune import find_wrappers
from tfprune.granularity import NM
from tfprune.oneshot import Magnitude
from tfprune.oneshot import SparseGPT
from tfprune.oneshot import Wanda

from tests.oneshot._reference import sparsegpt_reference
from tests.oneshot._reference import wanda_reference

L = keras.layers


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _data(n=192, features=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    x[:, 2] *= 20.0  # an outlier feature
    return x


def _mlp(features=12):
    return keras.Sequential([
        keras.Input((features,)),
        L.Dense(24, activation="relu", name="first"),
        L.Dense(16, activation="relu", name="second"),
        L.Dense(3, name="head"),
    ])


def _masked(model):
    """`{tensor: (masked value, mask)}` of the wrappers of `model`."""
    return {pw.name: (_np(pw.variable) * _np(m), _np(m))
            for w in find_wrappers(model) for pw, m in zip(w.pruned_weights, w.masks)}


def test_a_wrapped_copy_whose_masks_fine_tuning_keeps():
    model, x = _mlp(), _data()
    before = [w.copy() for w in model.get_weights()]
    pruned, report = tfprune.prune_oneshot(model, SparseGPT(0.5, block_size=8), x,
                                           verbose=0, return_report=True)
    assert pruned is not model and all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert [w.layer.name for w in find_wrappers(pruned)] == ["first", "second"]
    assert report["head/kernel"]["status"] == "protected"
    masks = {k: m for k, (_, m) in _masked(pruned).items()}
    for name, (value, mask) in _masked(pruned).items():
        assert np.sum(mask == 0) == mask.size // 2
        assert np.array_equal(value != 0, mask != 0) or np.all(value[mask == 0] == 0)
    y = np.random.default_rng(1).normal(size=(len(x), 3)).astype("float32")
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=2, batch_size=32, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=1)])
    for name, (value, mask) in _masked(pruned).items():
        np.testing.assert_array_equal(mask, masks[name])
        assert np.all(value[mask == 0] == 0) and np.any(value != 0)
    final = tfprune.strip(pruned)
    assert abs(tfprune.sparsity_report(final)["first/kernel"]["sparsity"] - 0.5) < 1e-9


def test_sequential_calibration_reads_the_pruned_earlier_blocks():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((12,)), L.Dense(20, activation="relu"),
                              L.Dense(10, name="second"), L.Dense(2, name="head")])
    x = _data()
    pruned = tfprune.prune_oneshot(model, SparseGPT(0.5, block_size=8), x, verbose=0)
    (w1, b1), (w2, _) = [model.layers[i].get_weights() for i in (0, 1)]
    w1_pruned = _np(find_wrappers(pruned)[0].layer.kernel)
    # Layer 2 is calibrated on what the pruned layer 1 gives it.
    h = np.maximum(x.astype(np.float64) @ w1_pruned + b1, 0.0)
    expected, mask = sparsegpt_reference(w2.T, 2 / len(h) * h.T @ h, 0.5, block=8)
    np.testing.assert_array_equal(_np(find_wrappers(pruned)[1].masks[0]), mask.T)
    np.testing.assert_allclose(_np(find_wrappers(pruned)[1].layer.kernel), expected.T,
                               atol=1e-4 * np.abs(expected).max())


def test_wanda_on_a_model_uses_the_norms_of_the_data():
    model, x = _mlp(), _data()
    pruned = tfprune.prune_oneshot(model, Wanda(0.5), x, batch_size=50, verbose=0)
    mask = _np(find_wrappers(pruned)[0].masks[0])
    np.testing.assert_array_equal(mask, wanda_reference(model.layers[0].get_weights()[0], x, 0.5))


def test_magnitude_needs_no_data_and_is_the_training_time_mask():
    model = _mlp()
    pruned = tfprune.prune_oneshot(model, Magnitude(0.6), verbose=0)
    kernel = model.layers[0].get_weights()[0]
    np.testing.assert_array_equal(_np(find_wrappers(pruned)[0].masks[0]),
                                  _np(magnitude_mask(kernel, 0.6)))
    report = tfprune.prune_oneshot(model, Magnitude(0.6), _data(), verbose=0,
                                   return_report=True)[1]
    assert report["first/kernel"]["error"] > 0


def test_inplace_prunes_the_model_itself_like_the_wrapped_copy():
    model, x = _mlp(), _data()
    wrapped = tfprune.prune_oneshot(model, SparseGPT(granularity="2:4"), x, verbose=0)
    expected = {w.layer.name: _np(w.layer.kernel) * _np(w.masks[0])
                for w in find_wrappers(wrapped)}
    result = tfprune.prune_oneshot(model, SparseGPT(granularity="2:4"), x, inplace=True,
                                   verbose=0)
    assert result is model and not find_wrappers(model)
    for layer in ("first", "second"):
        np.testing.assert_array_equal(model.get_layer(layer).get_weights()[0], expected[layer])
    assert np.sum(model.get_layer("head").get_weights()[0] == 0) == 0


def test_protection_filters_and_layers():
    model, x = _mlp(), _data()
    report = tfprune.prune_oneshot(model, Wanda(0.5), x, protect_outputs=False, verbose=0,
                                   return_report=True)[1]
    assert report["head/kernel"]["status"] == "pruned"
    report = tfprune.prune_oneshot(model, Wanda(0.5), x, filters="sec", verbose=0,
                                   return_report=True)[1]
    assert [r["status"] for r in report.rows] == ["not selected", "pruned", "not selected"]
    pruned, report = tfprune.prune_oneshot(model, Wanda(0.5), x, protect=["fir*"], verbose=0,
                                           return_report=True)
    assert report["first/kernel"]["status"] == "protected"
    assert [w.layer.name for w in find_wrappers(pruned)] == ["second"]


def test_embeddings_are_protected_and_recurrent_kernels_calibrated():
    keras.utils.set_random_seed(4)
    tokens = keras.Input((10,), dtype="int32")
    h = L.Embedding(50, 8, mask_zero=True, name="embed")(tokens)
    h = L.LSTM(12, return_sequences=True, name="lstm")(h)
    h = L.GRU(6, reset_after=False, name="gru")(h)
    model = keras.Model(tokens, L.Dense(2, name="head")(h))
    x = np.random.default_rng(0).integers(1, 50, (64, 10)).astype("int32")
    pruned, report = tfprune.prune_oneshot(model, SparseGPT(0.5), x, verbose=0,
                                           return_report=True)
    status = {r["tensor"]: r["status"] for r in report.rows}
    assert status["embed/embeddings"] == "protected"
    assert status["lstm/lstm_cell/kernel"] == "pruned"
    assert status["lstm/lstm_cell/recurrent_kernel"] == "pruned"
    assert status["gru/gru_cell/kernel"] == "pruned"
    assert status["gru/gru_cell/recurrent_kernel"].startswith("skipped: the recurrent kernel of a GRU")
    # Per block of 128 inputs and per gate: an LSTM kernel (8 x 4*12).
    masks = _masked(pruned)
    lstm = next(m for k, (_, m) in masks.items() if k.endswith("lstm_cell/kernel"))
    for gate in range(4):
        assert np.sum(lstm[:, 12 * gate:12 * gate + 12] == 0) == 8 * 12 // 2
    gru_recurrent = next(m for k, (_, m) in masks.items() if k.endswith("gru_cell/recurrent_kernel"))
    assert gru_recurrent.all()


def test_a_subclassed_model_is_calibrated_in_one_pass():
    @keras.saving.register_keras_serializable("tests_oneshot")
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a = L.Dense(16, activation="relu")
            self.b = L.Dense(8, activation="relu")
            self.out = L.Dense(1)

        def call(self, x):
            return self.out(self.b(self.a(x)))

    model, x = Net(), _data()
    model(x[:1])
    pruned, report = tfprune.prune_oneshot(model, SparseGPT(0.5), x, verbose=0,
                                           return_report=True)
    assert pruned is model and len(find_wrappers(model)) == 2
    assert report.blocks == [model.name]
    assert all(r["error"] is not None for r in report.rows if r["status"] == "pruned")


def test_data_forms_give_the_same_masks():
    tf = pytest.importorskip("tensorflow")
    model, x = _mlp(), _data(128)
    y = np.zeros((len(x), 3), "float32")

    def masks(data, **kwargs):
        return {k: m for k, (_, m) in _masked(
            tfprune.prune_oneshot(model, Wanda(0.5), data, verbose=0, **kwargs)).items()}

    reference = masks(x, batch_size=32)
    batches = [x[i:i + 32] for i in range(0, 128, 32)]
    for data, kwargs in [
        ((x, y), {"batch_size": 32}),
        (tf.data.Dataset.from_tensor_slices((x, y)).batch(32), {}),
        ((b for b in batches), {}),
        ([(b,) for b in batches], {}),
    ]:
        got = masks(data, **kwargs)
        for name in reference:
            np.testing.assert_array_equal(got[name], reference[name])


def test_dict_inputs_and_a_nested_model():
    inner = keras.Sequential([keras.Input((6,)), L.Dense(10, activation="relu", name="inner")])
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    h = L.Dense(6, name="mix")(L.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, L.Dense(1, name="head")(inner(h)))
    rng = np.random.default_rng(0)
    data = {"a": rng.normal(size=(40, 4)).astype("float32"),
            "b": rng.normal(size=(40, 2)).astype("float32")}
    pruned, report = tfprune.prune_oneshot(model, SparseGPT(0.5), data, verbose=0,
                                           return_report=True)
    assert report.blocks == ["mix", "inner"]
    with pytest.raises(ValueError, match=r"its inputs \['a', 'b'\] by name"):
        tfprune.prune_oneshot(model, Wanda(), {"a": data["a"]}, verbose=0)
    with pytest.raises(ValueError, match="does not fit input 'b'"):
        tfprune.prune_oneshot(model, Wanda(), dict(data, b=data["a"]), verbose=0)


def test_verbose_prints_progress_and_the_report(capsys):
    tfprune.prune_oneshot(_mlp(), Wanda(0.5), _data(), verbose=2)
    out = capsys.readouterr().out
    assert "block 1/2 'first': 1 tensors" in out and "block 2/2 'second'" in out
    assert "first/kernel" in out and "1 of" not in out.split("\n")[0]
    assert "2 blocks, 192 calibration samples" in out


def test_saved_and_reloaded_with_masks_and_exported(tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    model, x = _mlp(), _data()
    pruned = tfprune.prune_oneshot(model, SparseGPT(granularity=NM(2, 4)), x, verbose=0)
    pruned.save(tmp_path / "oneshot.keras")
    loaded = keras.saving.load_model(tmp_path / "oneshot.keras")
    for name, (value, mask) in _masked(pruned).items():
        np.testing.assert_array_equal(_masked(loaded)[name][1], mask)
    result = tfprune.export.tflite(pruned, tmp_path / "oneshot.tflite")
    assert result.max_abs_error is not None and len(result.sparse_tensors) >= 2
