"""Resuming a pruning run mid-schedule.

From a `ModelCheckpoint` `.keras` file, from a `.weights.h5` file loaded into
a freshly pruned model, with `BackupAndRestore` after the process was
killed, and what `QualityGuard` keeps across a resume. Each resumed run
must (1) start from the restored masks and clock, (2) update the masks at
the steps the schedule gives from the restored last update on, each update
to exactly `round(n * schedule(step))` zeros per tensor, and (3) end at the
schedule's final sparsity exactly.
"""

import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

import tfprune
from tfprune import schedules
from tfprune._masks.core import num_pruned
from tfprune import find_wrappers

END, EVERY, FINAL = 40, 4, 0.75  # schedule end step, update_every, final sparsity
STEPS = 8  # steps per epoch: 64 samples, batches of 8
SIZES = [8 * 16, 16 * 1]  # the pruned kernels of `_pruned`


def _schedule():
    return schedules.PolynomialDecay(0.0, FINAL, begin_step=0, end_step=END)


def _pruned(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(1),
    ])
    pruned = tfprune.prune(model, _schedule())
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    return pruned


def _data():
    rng = np.random.default_rng(0)
    return rng.random((64, 8)).astype("float32"), rng.random((64, 1)).astype("float32")


class _Trace(keras.callbacks.Callback):
    """Records the clock, the wrappers' last update step, the zeros of every
    mask and the logged sparsity at train begin and after each batch. List
    it after `PruningCallback`."""

    def __init__(self):
        super().__init__()
        self.records = []

    def _record(self, logs):
        wrappers = find_wrappers(self.model)
        self.records.append({
            "iterations": int(self.model.optimizer.iterations.numpy()),
            "updated_at": sorted({int(w.pruning_step.numpy()) for w in wrappers}),
            "zeros": [int(m.numpy().size - np.count_nonzero(m.numpy()))
                      for w in wrappers for m in w.masks],
            "sparsity": (logs or {}).get("sparsity"),
        })

    def on_train_begin(self, logs=None):
        self._record(None)

    def on_train_batch_end(self, batch, logs=None):
        self._record(logs)


def _zeros_at(step):
    return [num_pruned(n, _schedule()(step)) for n in SIZES]


def _assert_resumed(records, restored, last_update):
    """The run resumed at step `restored` with the masks of the update at
    `last_update`, then followed the schedule from there to its end."""
    begin, first = records[0], records[1]
    assert begin["iterations"] == restored  # the clock was restored, not reset to 0
    assert begin["updated_at"] == [last_update]
    assert begin["zeros"] == _zeros_at(last_update)
    # Right after the resume, the reported sparsity is the restored one.
    assert first["sparsity"] == pytest.approx(sum(_zeros_at(last_update)) / sum(SIZES))
    updates = [(r["updated_at"], r["zeros"]) for before, r in zip(records, records[1:])
               if r["updated_at"] != before["updated_at"]]
    steps = [*range(last_update + EVERY, END, EVERY), END]
    assert [u[0] for u in updates] == [[s] for s in steps]
    for (step,), zeros in updates:
        assert zeros == _zeros_at(step), step
    assert records[-1]["zeros"] == _zeros_at(END)  # exactly `round(n * FINAL)`


# ------------------------------------------------------------ .keras files
def test_resumes_from_a_model_checkpoint_keras_file(tmp_path, check_pruned):
    x, y = _data()
    model = _pruned()
    # A checkpoint every 10 steps: step 10 falls between the updates at 8 and 12.
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "epoch_{epoch}_batch_{batch}.keras"), save_freq=10)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
              callbacks=[tfprune.PruningCallback(update_every=EVERY), checkpoint])

    (path,) = tmp_path.glob("*.keras")
    assert path.name == "epoch_2_batch_2.keras"  # the second batch of epoch 2: step 10
    resumed = keras.saving.load_model(path)
    trace = _Trace()
    resumed.fit(x, y, batch_size=8, epochs=5, initial_epoch=1, verbose=0, shuffle=False,
                callbacks=[tfprune.PruningCallback(update_every=EVERY), trace])

    _assert_resumed(trace.records, restored=10, last_update=8)
    assert check_pruned(resumed, FINAL) == 2


# -------------------------------------------------------- .weights.h5 files
@pytest.fixture(scope="module")
def weights_checkpoint(tmp_path_factory):
    """The `.weights.h5` file `ModelCheckpoint` wrote after 2 epochs (16
    steps; the last update at 16)."""
    folder = tmp_path_factory.mktemp("weights")
    x, y = _data()
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(folder / "epoch_{epoch}.weights.h5"), save_weights_only=True)
    _pruned().fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                  callbacks=[tfprune.PruningCallback(update_every=EVERY), checkpoint])
    return folder / "epoch_2.weights.h5"


def test_resumes_from_weights_loaded_into_a_freshly_pruned_model(weights_checkpoint,
                                                                 check_pruned):
    fresh = _pruned(seed=1)
    # The optimizer's variables (its iteration count, the clock) are in the
    # file, but Keras loads them only into a built optimizer.
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(weights_checkpoint)
    x, y = _data()
    trace = _Trace()
    fresh.fit(x, y, batch_size=8, epochs=5, initial_epoch=2, verbose=0, shuffle=False,
              callbacks=[tfprune.PruningCallback(update_every=EVERY), trace])

    _assert_resumed(trace.records, restored=16, last_update=16)
    assert check_pruned(fresh, FINAL) == 2


def test_weights_loaded_before_the_optimizer_is_built_are_reported(weights_checkpoint):
    fresh = _pruned(seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh.load_weights(weights_checkpoint)  # Keras warns that it skips the optimizer
        x, y = _data()
        try:
            fresh.fit(x, y, batch_size=8, epochs=3, initial_epoch=2, verbose=0,
                      callbacks=[tfprune.PruningCallback(update_every=EVERY)])
            raised = None
        except ValueError as error:
            raised = error
    reported = [w for w in caught if str(w.message).startswith("tfprune")]
    assert raised is not None or reported


# ------------------------------------------------------- BackupAndRestore
_CHILD = """
import json, os, signal, sys
import keras
import numpy as np
import tfprune
from tfprune import schedules
from tfprune import find_wrappers

END, EVERY, FINAL = {END}, {EVERY}, {FINAL}
kill_at, backup, result = int(sys.argv[1]), sys.argv[2], sys.argv[3]

{source}

class KillAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

x, y = _data()
model, trace = _pruned(), _Trace()
model.fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False, callbacks=[
    keras.callbacks.BackupAndRestore(backup),
    tfprune.PruningCallback(update_every=EVERY),
    trace,
    KillAt(),
])
masked_weights_are_zero = all(
    bool(np.all(pw.variable.numpy()[m.numpy() == 0] == 0))
    for w in find_wrappers(model) for pw, m in zip(w.pruned_weights, w.masks))
with open(result, "w") as f:
    json.dump({{"records": trace.records, "masked_weights_are_zero": masked_weights_are_zero}}, f)
"""


def _run_child(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_backup_and_restore_resumes_after_a_hard_kill(tmp_path):
    source = "\n\n".join(textwrap.dedent(inspect.getsource(f))
                         for f in (_schedule, _pruned, _data, _Trace))
    script = tmp_path / "train.py"
    script.write_text(_CHILD.format(END=END, EVERY=EVERY, FINAL=FINAL, source=source))
    backup, result = tmp_path / "backup", tmp_path / "result.json"

    killed = _run_child(script, 20, backup, result)  # in epoch 3; backed up at step 16
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert not result.exists()
    with open(backup / "training_metadata.json") as f:
        assert json.load(f)["epoch"] == 2

    done = _run_child(script, -1, backup, result)  # a new process, to the end
    assert done.returncode == 0, done.stderr[-4000:]
    with open(result) as f:
        outcome = json.load(f)
    records = outcome["records"]
    _assert_resumed(records, restored=16, last_update=16)
    assert records[-1]["iterations"] == 5 * STEPS  # epochs 3 to 5, not 1 to 5 again
    assert outcome["masked_weights_are_zero"]
    assert not backup.exists()  # deleted at the end of the completed run


class _Crash(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 20:
            raise RuntimeError("crash")


def test_backup_and_restore_listed_after_the_pruning_callback(tmp_path, check_pruned):
    """As the hard-kill case above (where `BackupAndRestore` comes first),
    with the callbacks the other way round and a crash for the kill."""
    x, y = _data()
    backup = str(tmp_path / "backup")

    def callbacks(*extra):
        return [tfprune.PruningCallback(update_every=EVERY),
                keras.callbacks.BackupAndRestore(backup), *extra]

    with pytest.raises(RuntimeError, match="crash"):  # the backup of step 16 stays
        _pruned().fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False,
                      callbacks=callbacks(_Crash()))
    resumed, trace = _pruned(seed=1), _Trace()
    resumed.fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False,
                callbacks=callbacks(trace))

    _assert_resumed(trace.records, restored=16, last_update=16)
    assert check_pruned(resumed, FINAL) == 2


# ------------------------------------------------------------- QualityGuard
class _Metric(keras.callbacks.Callback):
    """Logs `val_score` from a fixed series (one value per epoch)."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = self.values[epoch]


def _guard(**kwargs):
    return tfprune.QualityGuard("val_score", max_degradation=0.02, mode="min", verbose=0,
                                **kwargs)


@pytest.fixture(scope="module")
def frozen_checkpoint(tmp_path_factory):
    """A `.keras` checkpoint written after QualityGuard froze pruning.

    The score degrades at epoch 4 (step 32): the guard restores the model of
    epoch 3 (masks of the update at step 24) and freezes the wrappers; the
    checkpoint of epoch 4 holds that model, with the clock at 32.
    """
    folder = tmp_path_factory.mktemp("guarded")
    x, y = _data()
    model, guard = _pruned(), _guard()
    checkpoint = keras.callbacks.ModelCheckpoint(str(folder / "epoch_{epoch}.keras"))
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, shuffle=False, callbacks=[
        tfprune.PruningCallback(update_every=EVERY), _Metric([1.0, 1.0, 1.0, 2.0]), guard,
        checkpoint,
    ])
    assert guard.stopped and guard.stopped_epoch == 3 and guard.best_value == 1.0
    assert all(w.frozen for w in find_wrappers(model))
    return folder / "epoch_4.keras"


def test_quality_guard_state_restarts_on_resume(frozen_checkpoint):
    """What survives: the model the guard restored (masks and pruning step).
    What restarts: the wrappers' `frozen`, the guard's `stopped`,
    `best_sparsity`, `best_value` and its reference, so pruning goes on from
    the schedule at the restored step (docs/strategies.md, QualityGuard)."""
    resumed = keras.saving.load_model(frozen_checkpoint)
    wrappers = find_wrappers(resumed)
    assert int(resumed.optimizer.iterations.numpy()) == 32
    assert {int(w.pruning_step.numpy()) for w in wrappers} == {24}
    assert not any(w.frozen for w in wrappers)

    x, y = _data()
    guard, trace = _guard(), _Trace()
    resumed.fit(x, y, batch_size=8, epochs=6, initial_epoch=4, verbose=0, shuffle=False,
                callbacks=[tfprune.PruningCallback(update_every=EVERY), trace,
                           _Metric([None] * 4 + [2.0, 2.02]), guard])
    begin = trace.records[0]
    # The first update, at train begin, jumps past the sparsity the guard kept.
    assert begin["updated_at"] == [32] and begin["zeros"] == _zeros_at(32)
    assert trace.records[-1]["zeros"] == _zeros_at(END)
    # The new guard measures against the first epoch after the resume (2.0),
    # so 2.02 passes although the first run stopped at 2.0 against 1.0.
    assert not guard.stopped and guard.best_value == 2.02


def test_a_guarded_run_resumes_frozen_without_the_guard(frozen_checkpoint):
    resumed = keras.saving.load_model(frozen_checkpoint)
    for wrapper in find_wrappers(resumed):
        wrapper.frozen = True
    x, y = _data()
    trace = _Trace()
    resumed.fit(x, y, batch_size=8, epochs=6, initial_epoch=4, verbose=0, shuffle=False,
                callbacks=[tfprune.PruningCallback(update_every=EVERY), trace])
    assert all(r["updated_at"] == [24] and r["zeros"] == _zeros_at(24) for r in trace.records)


def test_a_guard_with_a_baseline_keeps_its_reference_across_a_resume(frozen_checkpoint):
    resumed = keras.saving.load_model(frozen_checkpoint)
    x, y = _data()
    guard = _guard(baseline=1.0)
    resumed.fit(x, y, batch_size=8, epochs=5, initial_epoch=4, verbose=0, shuffle=False,
                callbacks=[tfprune.PruningCallback(update_every=EVERY),
                           _Metric([None] * 4 + [2.0]), guard])
    assert guard.stopped and guard.stopped_epoch == 4
