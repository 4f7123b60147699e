"""`PruningCallback`: clock, cadence, logs, TensorBoard, reuse."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune import schedules
from tfprune import find_wrappers

L = keras.layers
FINAL = 0.8
END = 30


class Recorder(keras.callbacks.Callback):
    """Records, after each batch, the clock, `logs["sparsity"]` and the
    wrappers' last update step. Put it after the `PruningCallback`."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        steps = {int(w.pruning_step.numpy()) for w in find_wrappers(self.model)}
        self.rows.append(
            (int(self.model.optimizer.iterations.numpy()), logs["sparsity"], steps)
        )


def _pruned_model(schedule=None, **compile_kwargs):
    model = keras.Sequential([keras.Input((8,)), L.Dense(16), L.Dense(1)])
    schedule = schedule or schedules.PolynomialDecay(0.0, FINAL, 0, END, power=1)
    pruned = tfprune.prune(model, schedule)
    pruned.compile(keras.optimizers.Adam(0.01), "mse", **compile_kwargs)
    return pruned


def _data(rng, n=END):
    return rng.random((n, 8)).astype("float32"), rng.random((n, 1)).astype("float32")


def _final_overall():
    # Dense kernels of 8x16 and 16x1 at FINAL sparsity.
    return (round(128 * FINAL) + round(16 * FINAL)) / 144


def _expected_update_steps(update_every):
    steps, last = [0], 0
    for t in range(1, END + 1):
        if t - last >= update_every or t >= END:
            steps.append(t)
            last = t
            if t >= END:
                break
    return steps


@pytest.mark.parametrize("update_every", [1, 7, 13, 29, 100])
def test_final_sparsity_is_reached_exactly_at_end_step(rng, check_pruned, update_every):
    pruned = _pruned_model()
    x, y = _data(rng)
    recorder = Recorder()
    pruned.fit(
        x, y, batch_size=1, epochs=1, verbose=0, shuffle=False,
        callbacks=[tfprune.PruningCallback(update_every=update_every), recorder],
    )
    clock = [row[0] for row in recorder.rows]
    assert clock == list(range(1, END + 1))
    # Masks change exactly at the expected steps, and the last one is END.
    update_steps = sorted({0} | {max(row[2]) for row in recorder.rows})
    assert update_steps == _expected_update_steps(update_every)
    check_pruned(pruned, FINAL)
    assert recorder.rows[-1][1] == pytest.approx(_final_overall())
    assert all(row[1] < _final_overall() for row in recorder.rows[:-1])


def test_sparsity_is_in_logs_and_history(rng):
    pruned = _pruned_model()
    x, y = _data(rng, 2 * END)
    history = pruned.fit(
        x, y, batch_size=4, epochs=4, verbose=0,
        callbacks=[tfprune.PruningCallback(update_every=5)],
    )
    values = history.history["sparsity"]
    assert len(values) == 4
    assert values == sorted(values) and values[0] > 0
    assert values[-1] == pytest.approx(tfprune.sparsity_report(pruned).sparsity)
    assert values[-1] == pytest.approx(_final_overall())


@pytest.mark.parametrize(
    "compile_kwargs",
    [pytest.param({"steps_per_execution": 4}, marks=pytest.mark.tensorflow_only),
     {"jit_compile": True},
     pytest.param({"steps_per_execution": 4, "jit_compile": True},
                  marks=pytest.mark.tensorflow_only)],
    ids=["steps_per_execution", "jit_compile", "both"],
)
def test_compile_options(rng, check_pruned, compile_kwargs):
    pruned = _pruned_model(**compile_kwargs)
    x, y = _data(rng)
    recorder = Recorder()
    pruned.fit(
        x, y, batch_size=1, epochs=1, verbose=0,
        callbacks=[tfprune.PruningCallback(update_every=7), recorder],
    )
    spe = compile_kwargs.get("steps_per_execution", 1)
    clock = [row[0] for row in recorder.rows]
    assert clock == sorted(set(list(range(spe, END, spe)) + [END]))
    check_pruned(pruned, FINAL)
    assert recorder.rows[-1][2] == {END}
    # Intermediate updates happened and respected `update_every`.
    updates = sorted({max(row[2]) for row in recorder.rows})
    assert len(updates) > 2 and all(b - a >= 7 for a, b in zip(updates, updates[1:-1]))
    x_test = x[:5]
    np.testing.assert_allclose(
        tfprune.strip(pruned).predict(x_test, verbose=0), pruned.predict(x_test, verbose=0),
        rtol=1e-6, atol=1e-6,
    )


def _read_scalars(log_dir):
    """`{tag: [(step, value), ...]}` from the TensorBoard event files."""
    scalars = {}
    files = glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True)
    assert files
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def test_log_dir_writes_per_layer_sparsity(rng, tmp_path):
    pruned = _pruned_model()
    x, y = _data(rng)
    pruned.fit(
        x, y, batch_size=1, epochs=1, verbose=0,
        callbacks=[tfprune.PruningCallback(update_every=10, log_dir=str(tmp_path))],
    )
    scalars = _read_scalars(tmp_path)
    names = [pw.name for w in find_wrappers(pruned) for pw in w.pruned_weights]
    assert len(names) == 2
    assert {f"sparsity/{name}" for name in names} | {"sparsity/overall"} == set(scalars)
    for name, n in zip(names, [128, 16]):
        series = scalars[f"sparsity/{name}"]
        assert [step for step, _ in series] == [0, 10, 20, 30]
        assert series[-1][1] == pytest.approx(round(n * FINAL) / n)
        assert series[0][1] == 0.0
    assert scalars["sparsity/overall"][-1] == (END, pytest.approx(_final_overall()))


def test_fit_without_callback_raises(rng):
    pruned = _pruned_model()
    x, y = _data(rng, 8)
    with pytest.raises(RuntimeError, match="PruningCallback"):
        pruned.fit(x, y, verbose=0)
    # Inference needs no callback.
    assert pruned.predict(x, verbose=0).shape == (8, 1)
    assert np.isfinite(pruned.evaluate(x, y, verbose=0))


def test_one_callback_for_two_fit_calls(rng, check_pruned):
    pruned = _pruned_model()
    x, y = _data(rng)
    callback = tfprune.PruningCallback(update_every=7)
    recorder = Recorder()
    pruned.fit(x[:15], y[:15], batch_size=1, verbose=0, callbacks=[callback, recorder])
    assert recorder.rows[-1][0] == 15
    assert recorder.rows[-1][2] == {14}
    pruned.fit(x[15:], y[15:], batch_size=1, verbose=0, callbacks=[callback, recorder])
    # The second fit continues the clock and the cadence of the first.
    assert sorted({max(row[2]) for row in recorder.rows}) == [0, 7, 14, 21, 28, 30]
    check_pruned(pruned, FINAL)


def test_one_callback_for_two_models(rng, check_pruned):
    first, second = _pruned_model(), _pruned_model(schedules.Constant(0.5))
    x, y = _data(rng, 8)
    callback = tfprune.PruningCallback()
    first.fit(x, y, verbose=0, callbacks=[callback])
    second.fit(x, y, verbose=0, callbacks=[callback])
    check_pruned(second, 0.5)
    assert callback.sparsity == pytest.approx((64 + 8) / 144)
    # The callback let go of both models at train end: a train function
    # built now (traced anew) refuses to train without it.
    for model in (first, second):
        model.make_train_function(force=True)
        with pytest.raises(RuntimeError, match="being trained without"):
            model.fit(x, y, verbose=0)


def test_update_masks_by_hand(rng, check_pruned):
    pruned = _pruned_model()
    callback = tfprune.PruningCallback(update_every=5)
    callback.set_model(pruned)
    callback.on_train_begin()
    assert callback.update_masks(step=3) is False  # 3 steps since the update at 0
    assert callback.update_masks(step=END) is True
    assert callback.update_masks(step=END + 50) is False  # schedule is over
    callback.on_train_end()
    check_pruned(pruned, FINAL)
