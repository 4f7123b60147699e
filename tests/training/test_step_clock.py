"""`PruningCallback` counts steps on the host and reads the device only when
an update is due: at train begin, after the first batch (a restore may have
moved the clock) and at each due update."""

import keras
import pytest
import tensorflow as tf

import tfprune
from tfprune import schedules
from tfprune._training import callback as _callback

L = keras.layers
END = 24


def _model(spe=1):
    model = keras.Sequential([keras.Input((8,)), L.Dense(16), L.Dense(1)])
    pruned = tfprune.prune(model, schedules.PolynomialDecay(0.0, 0.75, 0, END, power=1))
    pruned.compile(keras.optimizers.Adam(0.01), "mse", steps_per_execution=spe)
    return pruned


def _count_reads(monkeypatch):
    reads, updates = [], []
    real_step = _callback.PruningCallback._step
    real_update = _callback.PruningCallback.update_masks

    def step(self):
        value = real_step(self)
        reads.append(value)
        return value

    def update(self, step=None):
        changed = real_update(self, step)
        if changed:
            updates.append(step)
        return changed

    monkeypatch.setattr(_callback.PruningCallback, "_step", step)
    monkeypatch.setattr(_callback.PruningCallback, "update_masks", update)
    return reads, updates


@pytest.mark.parametrize("spe", [1, pytest.param(3, marks=pytest.mark.tensorflow_only)],
                         ids=["one_step", "steps_per_execution_3"])
def test_device_is_read_only_when_an_update_is_due(rng, monkeypatch, spe):
    reads, updates = _count_reads(monkeypatch)
    x, y = rng.random((40, 8)).astype("float32"), rng.random((40, 1)).astype("float32")
    pruned = _model(spe)
    history = pruned.fit(x, y, batch_size=4, epochs=4, verbose=0,
                         callbacks=[tfprune.PruningCallback(update_every=5, in_step=False)])
    # Between steps: 40 steps, updates at 0 and at the first batch end at or past 5, 10,
    # ... and END; reads at train begin, after the first batch and at each
    # of those updates, never on the other batches.
    assert updates[0] == 0 and END <= updates[-1] < END + spe  # the first batch end past END
    assert all(b - a >= 5 for a, b in zip(updates, updates[1:-1]))
    assert len(reads) <= len(updates) + 2
    assert len(reads) < 40 // spe
    # logs["sparsity"] comes from the zeros counted by the last update.
    assert history.history["sparsity"][-1] == pytest.approx((96 + 12) / 144)
    report = tfprune.sparsity_report(tfprune.strip(pruned))
    assert report.zeros == 96 + 12


@pytest.mark.tensorflow_only
def test_in_step_updates_read_the_device_three_times_per_fit(rng, monkeypatch):
    """Inside the train step the device decides when an update is due: the
    host reads the clock at train begin, after the first batch (a restore
    may have moved it) and at train end, whatever the number of updates."""
    reads, updates = _count_reads(monkeypatch)
    x, y = rng.random((40, 8)).astype("float32"), rng.random((40, 1)).astype("float32")
    pruned = _model()
    callback = tfprune.PruningCallback(update_every=5, in_step=True)
    history = pruned.fit(x, y, batch_size=4, epochs=4, verbose=0, callbacks=[callback])
    assert updates == [0]  # the host ran only the update due at train begin
    assert len(reads) == 3
    steps = {int(w.pruning_step.numpy()) for w in tfprune._training.wrapper.find_wrappers(pruned)}
    assert steps == {END}
    assert history.history["sparsity"][-1] == pytest.approx((96 + 12) / 144)
    assert callback.sparsity == pytest.approx((96 + 12) / 144)
    assert tfprune.sparsity_report(tfprune.strip(pruned)).zeros == 96 + 12


def test_clock_follows_a_restored_iteration_count(rng):
    """A callback that moves `optimizer.iterations` at train begin (as
    BackupAndRestore does) is seen after the first batch: the schedule goes
    on from the restored step, not from the start of this `fit`."""
    x, y = rng.random((16, 8)).astype("float32"), rng.random((16, 1)).astype("float32")
    pruned = _model()

    class Restore(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.optimizer.iterations.assign(20)

    callback = tfprune.PruningCallback(update_every=100)
    pruned.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[callback, Restore()])
    steps = {int(w.pruning_step.numpy()) for w in tfprune._training.wrapper.find_wrappers(pruned)}
    assert steps == {END}  # past the restored 20, END is reached at step 24
    assert callback.sparsity == pytest.approx((96 + 12) / 144)


@pytest.mark.tensorflow_only
def test_custom_loop_counting_from_zero_each_epoch(rng):
    pruned = _model()
    optimizer = pruned.optimizer
    callback = tfprune.PruningCallback(update_every=4)
    callback.set_model(pruned)
    callback.on_train_begin()
    x = rng.random((4, 8)).astype("float32")
    for _ in range(3):  # 3 epochs of 10 steps, `step` restarts at 0
        for step in range(10):
            with tf.GradientTape() as tape:
                loss = keras.ops.mean(pruned(x, training=True) ** 2)
            grads = tape.gradient(loss, pruned.trainable_variables)
            optimizer.apply(grads, pruned.trainable_variables)
            callback.on_train_batch_end(step)
    callback.on_train_end()
    assert callback._clock == int(optimizer.iterations.numpy()) == 30
    assert callback.sparsity == pytest.approx((96 + 12) / 144)
