"""The mask update inside the compiled train step (`PruningCallback(in_step=...)`).

Inside the step the device decides when an update is due and runs the same
traced update as between steps, with counts the host computed once: the
weights, masks and logged sparsity must be bit-identical to the update
between steps, for every strategy the in-step path takes.
"""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import granularity
from tfprune import schedules
from tfprune import strategies
from tfprune import find_wrappers

L = keras.layers
JAX = keras.backend.backend() == "jax"
TORCH = keras.backend.backend() == "torch"
# On PyTorch the update runs between steps (the last test checks that
# `in_step=True` says so); the rest runs on TensorFlow and JAX.
inside_the_step = pytest.mark.skipif(TORCH, reason="PyTorch updates between steps")
END = 30


def _model():
    return keras.Sequential([
        keras.Input((8,)), L.Dense(16, activation="relu", name="hidden"),
        L.Dense(8, activation="relu", name="middle"), L.Dense(2, name="head")])


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8)).astype("float32")
    return x, (x @ rng.random((8, 2))).astype("float32")


def _fit(strategy, in_step, final=0.75, callbacks=()):
    keras.utils.set_random_seed(0)
    schedule = schedules.PolynomialDecay(0.0, final, 2, END, power=3)
    pruned = tfprune.prune(_model(), schedule, strategy=strategy)
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    callback = tfprune.PruningCallback(update_every=3, in_step=in_step)
    x, y = _data()
    history = pruned.fit(x, y, batch_size=4, epochs=4, verbose=0, shuffle=False,
                         validation_data=(x[:8], y[:8]), callbacks=[callback, *callbacks])
    return pruned, history.history, callback


STRATEGIES = {
    "magnitude": None,
    "2:4": strategies.Strategy("magnitude", granularity.NM(2, 4), "uniform"),
    "units": strategies.Strategy("l2_norm", granularity.Units(), "uniform"),
    "block": strategies.Strategy("magnitude", granularity.Block((4, 1)), "uniform"),
    "per_layer": strategies.Strategy(
        "magnitude", "unstructured", strategies.PerLayer({"hidden": 0.5, "middle": 0.9})),
    "taylor": strategies.Strategy("taylor", "unstructured", "uniform"),
}


#: On JAX, the strategies whose update differs most (the others take the
#: same path there; TensorFlow runs them all).
JAX_STRATEGIES = ("magnitude", "2:4", "units", "taylor")


@inside_the_step
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_in_step_masks_equal_the_masks_between_steps(name):
    if JAX and name not in JAX_STRATEGIES:
        pytest.skip("the TensorFlow pass runs it; on JAX it takes the path of another case")
    final = 0.5 if name == "2:4" else 0.75
    between, history_b, callback_b = _fit(STRATEGIES[name], in_step=False, final=final)
    inside, history_i, callback_i = _fit(STRATEGIES[name], in_step=True, final=final)
    for a, b in zip(between.weights, inside.weights):  # kernels, masks, steps, all of them
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert history_i["sparsity"] == history_b["sparsity"]
    assert history_i["loss"] == history_b["loss"]
    # Validation after each epoch sees the masks due by then, both ways.
    assert history_i["val_loss"] == history_b["val_loss"]
    assert callback_i.sparsity == callback_b.sparsity > 0
    assert [c.last for c in callback_i._cohorts] == [[END] * len(find_wrappers(inside))]
    assert callback_i._in_step is None and callback_b._in_step is None  # after fit
    # The next fit builds a plain train function again.
    assert inside.train_function is None


@inside_the_step
@pytest.mark.tensorflow_only  # on JAX such cohorts update between steps
def test_wrappers_with_their_own_schedules_are_updated_each_on_its_own():
    x, y = _data()
    results = []
    for in_step in (False, True):
        keras.utils.set_random_seed(0)
        model = _model()
        layers = {"hidden": schedules.PolynomialDecay(0.0, 0.5, 0, 12, power=1),
                  "middle": schedules.PolynomialDecay(0.2, 0.8, 6, 24, power=2)}
        pruned = keras.Sequential([keras.Input((8,))] + [
            tfprune.PruningWrapper(layer, layers[layer.name]) if layer.name in layers else layer
            for layer in model.layers])
        pruned.compile(keras.optimizers.Adam(0.01), "mse")
        pruned.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False,
                   callbacks=[tfprune.PruningCallback(update_every=4, in_step=in_step)])
        results.append([w.numpy() for w in pruned.weights])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    masks = {w.layer.name: w.masks[0].numpy() for w in find_wrappers(pruned)}
    assert int((masks["hidden"] == 0).sum()) == round(8 * 16 * 0.5)
    assert int((masks["middle"] == 0).sum()) == round(16 * 8 * 0.8)


class _Probe(keras.callbacks.Callback):
    """Records whether the pruning callback runs its updates in the step."""

    def __init__(self, callback):
        super().__init__()
        self.callback, self.inside = callback, []

    def on_train_batch_end(self, batch, logs=None):
        self.inside.append(self.callback._in_step is not None)


@pytest.mark.parametrize("case", ["log_dir", "global", "steps_per_execution", "jit_compile",
                                  "random", "schedules"])
@inside_the_step
def test_auto_updates_between_steps_where_the_step_cannot(case, tmp_path):
    strategy, compile_kwargs, callback_kwargs = None, {}, {}
    reason = {
        "log_dir": "`log_dir`",
        "global": "Global allocation ranks the items of several tensors on the host",
        "steps_per_execution": "needs `steps_per_execution=1`",
        # TensorFlow: not in an XLA-compiled step; JAX: only in a compiled one.
        "jit_compile": "compiled train step only" if JAX else "XLA-compiled train step",
        "random": "Random scores are drawn on the host",
        "schedules": "schedules of their own",
    }[case]
    if case == "schedules" and not JAX:
        pytest.skip("TensorFlow updates wrappers with schedules of their own inside the step")
    if case == "log_dir":
        callback_kwargs["log_dir"] = str(tmp_path / "logs")
    elif case == "global":
        strategy = strategies.Strategy("magnitude", "unstructured", strategies.Global())
    elif case == "steps_per_execution":
        compile_kwargs["steps_per_execution"] = 3
    elif case == "jit_compile":
        compile_kwargs["jit_compile"] = not JAX
    elif case == "random":
        strategy = strategies.Strategy("random", "unstructured", "uniform")
    pruned = tfprune.prune(_model(), schedules.PolynomialDecay(0.0, 0.5, 0, 12),
                           strategy=strategy)
    if case == "schedules":  # the second wrapper gets a schedule of its own
        find_wrappers(pruned)[1].schedule = schedules.PolynomialDecay(0.0, 0.5, 0, 10)
    pruned.compile("adam", "mse", **compile_kwargs)
    x, y = _data()
    callback = tfprune.PruningCallback(update_every=3, **callback_kwargs)
    probe = _Probe(callback)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback, probe])
    assert probe.inside and not any(probe.inside)
    assert tfprune.sparsity_report(pruned).sparsity == pytest.approx(0.5, abs=0.01)

    forced = tfprune.PruningCallback(update_every=3, in_step=True, **callback_kwargs)
    pattern = rf"^`in_step=True`, but .*{reason}.*Received: in_step=True$"
    with pytest.raises(ValueError, match=pattern):
        pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[forced])


@inside_the_step
def test_auto_runs_inside_the_step_when_it_can():
    callback = tfprune.PruningCallback(update_every=3)
    probe = _Probe(callback)
    pruned = tfprune.prune(_model(), schedules.PolynomialDecay(0.0, 0.5, 0, 12))
    pruned.compile("adam", "mse")
    x, y = _data()
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback, probe])
    assert probe.inside and all(probe.inside)


@pytest.mark.parametrize("bad", ["yes", 1, None], ids=["str", "int", "none"])
def test_in_step_must_be_auto_or_a_bool(bad):
    with pytest.raises(ValueError, match=rf'^`in_step` must be "auto", True or False\. '
                                         rf"Received: in_step={bad!r}$"):
        tfprune.PruningCallback(in_step=bad)


@inside_the_step
def test_a_weight_that_diverges_mid_training_is_named():
    class Diverge(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4:
                kernel = self.model.get_layer("pruned_hidden").layer.kernel
                kernel.assign(np.full(kernel.shape, np.nan, "float32"))

    with pytest.raises(ValueError, match=r"Weight 'hidden/kernel' of layer 'hidden' holds NaN "
                                         r".*Received: layer=hidden$"):
        _fit(None, in_step=True, callbacks=[Diverge()])


@inside_the_step
def test_lstm_units_with_their_biases_masked_but_not_counted():
    """`Units` on an LSTM masks its bias entries too (not counted in the
    sparsity): the device keeps the counts the host would."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 5, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None].astype("float32")
    strategy = strategies.Strategy("l2_norm", granularity.Units(), "uniform")
    runs = []
    for in_step in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5, 3)), L.LSTM(8, name="lstm"),
                                  L.Dense(1, name="out")])
        pruned = tfprune.prune(model, schedules.PolynomialDecay(0.0, 0.5, 0, 12, power=1),
                               layers=["lstm"], strategy=strategy)
        pruned.compile(keras.optimizers.Adam(0.01), "mse")
        callback = tfprune.PruningCallback(update_every=2, in_step=in_step)
        history = pruned.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False,
                             callbacks=[callback])
        runs.append(([w.numpy() for w in pruned.weights], history.history["sparsity"],
                     callback.sparsity))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2] > 0


@pytest.mark.skipif(not TORCH, reason="PyTorch only")
def test_on_pytorch_the_update_runs_between_steps():
    pruned = tfprune.prune(_model(), schedules.PolynomialDecay(0.0, 0.5, 0, 12))
    pruned.compile("adam", "mse")
    x, y = _data()
    callback = tfprune.PruningCallback(update_every=3, in_step=True)
    with pytest.raises(ValueError, match=r"runs on TensorFlow and JAX only \(this is 'torch'\)"):
        pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    auto = tfprune.PruningCallback(update_every=3)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[auto])
    assert tfprune.sparsity_report(pruned).sparsity == pytest.approx(0.5, abs=0.01)
