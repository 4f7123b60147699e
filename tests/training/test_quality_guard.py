import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune import QualityGuard
from tfprune._training.quality_guard import mask_sparsity
from tfprune import find_wrappers


def pruned_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(10, activation="relu"),
        keras.layers.Dense(1),
    ])
    return tfprune.prune(model, 0.9)


def state(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


def run_epoch(guard, model, epoch, sparsity, value):
    """One simulated epoch: the model moves on, masks rise, the metric is logged."""
    for wrapper in find_wrappers(model):
        if not getattr(wrapper, "frozen", False):
            wrapper.prune_to(sparsity)
    for v in model.trainable_weights:
        v.assign(v.value * 1.01)
    guard.on_epoch_end(epoch, {"val_mae": value, "loss": 0.0})


def test_stops_restores_and_reports_on_a_degrading_series(capsys):
    model = pruned_model()
    guard = QualityGuard(monitor="val_mae", max_degradation=0.02)
    guard.set_model(model)
    guard.on_train_begin()
    run_epoch(guard, model, 0, 0.2, 1.00)
    run_epoch(guard, model, 1, 0.5, 0.99)  # new best
    run_epoch(guard, model, 2, 0.7, 1.005)  # 1.5% worse than 0.99: fine
    good = state(model)
    good_sparsity = mask_sparsity(find_wrappers(model))
    assert not guard.stopped and guard.best_sparsity == pytest.approx(good_sparsity)
    run_epoch(guard, model, 3, 0.85, 1.03)  # 4% worse: stop
    assert guard.stopped and guard.stopped_epoch == 3
    for a, b in zip(good, state(model)):
        np.testing.assert_array_equal(a, b)  # weights, masks and steps restored
    assert all(w.frozen for w in find_wrappers(model))
    assert guard.best_sparsity == pytest.approx(good_sparsity) and guard.best_value == 1.005
    assert good_sparsity == pytest.approx(0.7, abs=0.02)
    run_epoch(guard, model, 4, 0.9, 5.0)  # later epochs change nothing
    assert guard.stopped_epoch == 3 and guard.best_sparsity == pytest.approx(good_sparsity)
    guard.on_train_end()
    out = capsys.readouterr().out
    assert "froze pruning" in out and f"{good_sparsity:.4f}" in out


def test_a_fixed_baseline_and_the_start_of_training():
    model = pruned_model()
    start = state(model)
    guard = QualityGuard(max_degradation=0.1, baseline=1.0, verbose=0)
    guard.set_model(model)
    guard.on_train_begin()
    run_epoch(guard, model, 0, 0.5, 1.2)  # already 20% worse than the baseline
    assert guard.stopped and guard.best_sparsity is None
    for a, b in zip(start, state(model)):
        np.testing.assert_array_equal(a, b)
    # A new fit starts over.
    guard.on_train_begin()
    assert not guard.stopped and not any(w.frozen for w in find_wrappers(model))
    run_epoch(guard, model, 0, 0.5, 1.05)
    assert not guard.stopped and guard.best_sparsity == pytest.approx(0.5, abs=0.02)


def test_higher_is_better_metrics():
    model = pruned_model()
    guard = QualityGuard(monitor="val_accuracy", max_degradation=0.05, verbose=0)
    assert guard.mode == "max"
    guard.set_model(model)
    guard.on_train_begin()
    for epoch, value in enumerate([0.80, 0.90, 0.86]):  # 4.4% below the best: fine
        guard.on_epoch_end(epoch, {"val_accuracy": value})
    assert not guard.stopped
    guard.on_epoch_end(3, {"val_accuracy": 0.85})  # 5.6% below 0.90
    assert guard.stopped
    assert guard.degradation(0.85, 0.90) == pytest.approx(0.0556, abs=1e-3)


def test_missing_metric_warns_once():
    model = pruned_model()
    guard = QualityGuard(monitor="val_mae", verbose=0)
    guard.set_model(model)
    guard.on_train_begin()
    with pytest.warns(UserWarning, match="'val_mae' is not in the epoch logs"):
        guard.on_epoch_end(0, {"loss": 1.0})
    guard.on_epoch_end(1, {"loss": 1.0})  # no second warning (warnings are errors)
    assert not guard.stopped


def test_guards_only_pruned_models():
    guard = QualityGuard()
    guard.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    with pytest.raises(ValueError, match=r"Received: model=sequential"):
        guard.on_train_begin()


def test_arguments_and_config():
    with pytest.raises(ValueError, match=r"Received: max_degradation=-0\.1$"):
        QualityGuard(max_degradation=-0.1)
    with pytest.raises(ValueError, match=r"Received: max_degradation=inf$"):
        QualityGuard(max_degradation=float("inf"))
    with pytest.raises(TypeError, match=r"2%\)\. Received: max_degradation='0\.02'$"):
        QualityGuard(max_degradation="0.02")
    with pytest.raises(ValueError, match=r"Received: mode='up'$"):
        QualityGuard(mode="up")
    with pytest.raises(TypeError, match=r"Received: baseline='1'$"):
        QualityGuard(baseline="1")
    guard = QualityGuard(
        monitor="val_loss", max_degradation=0.1, baseline=0.5, mode="min", verbose=0
    )
    config = json.loads(json.dumps(guard.get_config()))
    assert QualityGuard.from_config(config).get_config() == guard.get_config()
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(guard)))
    )
    assert isinstance(restored, QualityGuard) and restored.get_config() == guard.get_config()


def test_works_inside_fit():
    model = pruned_model()
    model.compile("adam", "mae")
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    y = x[:, :1]
    guard = QualityGuard(monitor="val_loss", max_degradation=0.5, verbose=0)
    model.fit(x, y, validation_data=(x, y), epochs=2, batch_size=16, verbose=0,
              callbacks=[tfprune.PruningCallback(update_every=1), guard])
    assert guard.best_sparsity == pytest.approx(0.9, abs=0.01) and not guard.stopped
