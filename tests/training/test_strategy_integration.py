"""Strategies end to end: `prune(..., strategy=)` -> `fit` with the callback.

Each test trains a tiny model through `model.fit` and checks what the
strategy promises: exact counts, valid patterns, whole units that `shrink`
then removes, global allocation, protection, `QualityGuard`, sensitivity
tables, and save / load / resume.
"""

import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune import criteria
from tfprune import granularity
from tfprune import schedules
from tfprune import strategies
from tfprune._masks.core import magnitude_mask
from tfprune import find_wrappers

L = keras.layers
END = 8  # schedules end at step 8; fits run 10 steps
STEPS = 10


def _mlp(inputs=8, name="mlp"):
    return keras.Sequential(
        [keras.Input((inputs,)), L.Dense(12, activation="relu", name="d1"),
         L.Dense(8, activation="relu", name="d2"), L.Dense(1, name="head")],
        name=name,
    )


def _rnn(cls, units=6):
    return keras.Sequential(
        [keras.Input((5, 3)), cls(units, name="rnn", bias_initializer="random_normal"),
         L.Dense(1, name="head")],
        name="recurrent_model",
    )


def _data(rng, shape=(8,), n=4 * STEPS):
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = np.sum(x.reshape(n, -1)[:, :3], axis=1, keepdims=True).astype("float32")
    return x, y


def _fit(pruned, x, y, callbacks=(), epochs=1, **kwargs):
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    callback = tfprune.PruningCallback(update_every=2)
    pruned.fit(x, y, batch_size=len(x) // STEPS, epochs=epochs, verbose=0, shuffle=False,
               callbacks=[callback, *callbacks], **kwargs)
    return callback


def _schedule(final=0.5):
    return schedules.PolynomialDecay(0.0, final, 0, END, power=1)


def _masks(model) -> dict:
    return {slot.weight.name: slot.mask.numpy() for w in find_wrappers(model) for slot in w.slots}


def _zeros(a) -> int:
    a = np.asarray(a)
    return int(a.size - np.count_nonzero(a))


def _check_variables_follow_masks(model):
    for w in find_wrappers(model):
        for slot in w.slots:
            value = slot.weight.variable.numpy()
            assert np.all(value[slot.mask.numpy() == 0] == 0), slot.weight.name


def _kernels(model) -> dict:
    return {f"{r['layer']}/{r['weight']}": r for r in tfprune.sparsity_report(model).rows}


# ------------------------------------------------------------- criteria
@pytest.mark.parametrize("criterion", ["magnitude", "random", "taylor", "movement"])
def test_each_criterion_reaches_exact_counts_through_fit(rng, criterion):
    x, y = _data(rng)
    model = _mlp()
    pruned = tfprune.prune(model, _schedule(0.6), strategy=strategies.Strategy(criterion))
    _fit(pruned, x, y)
    _check_variables_follow_masks(pruned)
    for name, row in _kernels(pruned).items():
        assert row["zeros"] == round(row["parameters"] * 0.6), name
    wrappers = find_wrappers(pruned)
    scores = [s.score for w in wrappers for s in w.slots if s.score is not None]
    if criterion in ("taylor", "movement"):
        # Fed by the backward pass during fit (Taylor restarts after each
        # update, the last at step 8; two more steps were accumulated).
        assert len(scores) == 3 and all(np.any(s.numpy() != 0) for s in scores)
    else:
        assert scores == []  # nothing is added to the train step
        assert len(wrappers[0].weights) == 2 + 2  # kernel, bias, mask, pruning_step
    if criterion == "random":
        # Random scores depend on the seed, the step and the tensor alone, so
        # the masks of the updates at steps 0, 2, 4, 6 and 8 can be replayed.
        schedule, masks = _schedule(0.6), _masks(pruned)
        for key, name in enumerate(["d1/kernel", "d2/kernel", "head/kernel"]):
            expected = np.ones(masks[name].shape, "float32")
            for step in range(0, END + 1, 2):
                scores = criteria.Random(0).score(expected, step=step, key=key)
                expected = np.asarray(granularity.Unstructured().mask(
                    scores, schedule(step), expected))
            np.testing.assert_array_equal(masks[name], expected, err_msg=name)


def test_the_callback_scores_with_the_accumulated_gradient_states():
    pruned = tfprune.prune(_mlp(), schedules.Constant(0.5), strategy=strategies.Strategy("taylor"))
    pruned.compile("sgd", "mse")
    callback = tfprune.PruningCallback()
    callback.set_model(pruned)
    wrapper = pruned.get_layer("pruned_d1")
    score = wrapper.slots[0].score
    state = np.zeros(score.shape, "float32")
    state[3, :] = 1.0  # only input 3 has ever mattered
    score.assign(state)
    callback.on_train_begin()  # first update: scores from the states, then reset
    mask = wrapper.masks[0].numpy()
    np.testing.assert_array_equal(mask[3], np.ones(12))
    assert _zeros(mask) == 48 and np.all(score.numpy() == 0)
    callback.on_train_end()


# ---------------------------------------------------------- granularity
def _blocks_valid(mask, block=(4, 1)):
    rows, cols = mask.shape
    tiles = mask.reshape(rows // block[0], block[0], cols // block[1], block[1])
    per_block = tiles.sum(axis=(1, 3))
    assert np.all((per_block == 0) | (per_block == block[0] * block[1]))
    return int(np.sum(per_block == 0))


def test_block_granularity_prunes_whole_blocks(rng):
    x, y = _data(rng)
    strategy = strategies.Strategy(granularity=granularity.Block((4, 1)))
    pruned = tfprune.prune(_mlp(), _schedule(0.5), strategy=strategy)
    _fit(pruned, x, y)
    masks = _masks(pruned)
    assert _blocks_valid(masks["d1/kernel"]) == 12  # 24 blocks of 4 input rows
    assert _blocks_valid(masks["d2/kernel"]) == 12  # 12x8: 24 blocks
    assert _blocks_valid(masks["head/kernel"]) == 1  # 8x1: 2 blocks
    _check_variables_follow_masks(pruned)


def test_nm_granularity_is_valid_in_every_group(rng):
    x, y = _data(rng)
    strategy = strategies.Strategy("movement", granularity.NM(2, 4))
    pruned = tfprune.prune(_mlp(), _schedule(0.5), strategy=strategy)
    _fit(pruned, x, y)
    for name, mask in _masks(pruned).items():
        groups = np.moveaxis(mask, -2, -1).reshape(-1, 4)  # 4 consecutive inputs
        np.testing.assert_array_equal(groups.sum(axis=1), 2.0, err_msg=name)
    with pytest.raises(ValueError, match=r"at most 0\.5, but the schedule ends at 0\.6"):
        tfprune.prune(_mlp(), 0.6, strategy=strategy)


def test_units_granularity_on_an_mlp_then_shrink(rng):
    x, y = _data(rng)
    strategy = strategies.Strategy("l2_norm", "units")
    pruned = tfprune.prune(_mlp(), _schedule(0.5), strategy=strategy)
    _fit(pruned, x, y)
    masks = _masks(pruned)
    d1, d2 = masks["d1/kernel"], masks["d2/kernel"]
    assert np.sum(d1.max(axis=0) == 0) == 6 and np.all(d1.min(axis=0) == d1.max(axis=0))
    assert np.sum(d2.max(axis=0) == 0) == 4 and np.all(d2.min(axis=0) == d2.max(axis=0))
    assert _zeros(masks["head/kernel"]) == 4  # the output unit stays: unstructured
    small = tfprune.shrink(pruned)
    # The head's pruned weights can leave more d2 units unread: those go too.
    assert small.get_layer("d1").units == 6 and small.get_layer("d2").units <= 4
    np.testing.assert_allclose(small.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-5)


@pytest.mark.parametrize("cls, gates", [(L.LSTM, 4), (L.GRU, 3)])
def test_units_remove_whole_recurrent_units_and_shrink_removes_them(rng, cls, gates):
    x, y = _data(rng, (5, 3))
    pruned = tfprune.prune(_rnn(cls), _schedule(0.5), strategy=strategies.recurrent(units=True))
    _fit(pruned, x, y)
    _check_variables_follow_masks(pruned)
    (wrapper, _) = find_wrappers(pruned)
    cell = wrapper.layer.cell
    kernel, recurrent = cell.kernel.numpy(), cell.recurrent_kernel.numpy()
    bias = cell.bias.numpy().reshape(-1, gates * 6)
    dead = [j for j in range(6) if not kernel[:, j].any()]
    assert len(dead) == 3
    for j in dead:
        cols = [j + g * 6 for g in range(gates)]
        assert not kernel[:, cols].any() and not recurrent[:, cols].any()
        assert not recurrent[j].any() and not bias[:, cols].any()
    # The bias mask is state of the wrapper, not a pruned weight.
    assert [s.counted for s in wrapper.slots] == [True, True, False]
    assert set(_kernels(pruned)) == {f"rnn/{cell.name}/kernel",
                                     f"rnn/{cell.name}/recurrent_kernel", "head/kernel"}
    small = tfprune.shrink(pruned)
    assert small.get_layer("rnn").units == 3
    np.testing.assert_allclose(small.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-5)


# ----------------------------------------------------------- allocation
def test_global_allocation_differs_per_layer_with_the_exact_total(rng):
    x, y = _data(rng)
    pruned = tfprune.prune(_mlp(), _schedule(0.7), strategy="dense")
    _fit(pruned, x, y)
    rows = _kernels(pruned)
    total = sum(r["parameters"] for r in rows.values())
    assert sum(r["zeros"] for r in rows.values()) == round(total * 0.7)
    assert len({round(r["sparsity"], 3) for r in rows.values()}) > 1
    _check_variables_follow_masks(pruned)


def test_sensitivity_table_drives_the_allocation(rng):
    x, y = _data(rng)
    model = _mlp()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    table = tfprune.sensitivity(model, (x, y), sparsities=(0.5, 0.8, 0.95), verbose=0)
    allocation = strategies.SensitivityAllocation(table)
    strategy = strategies.Strategy(allocation=allocation)
    expected = allocation.allocate(strategy.plan(model).candidates(), 0.7)
    pruned = tfprune.prune(model, _schedule(0.7), strategy=strategy)
    _fit(pruned, x, y)
    rows = _kernels(pruned)
    total = sum(r["parameters"] for r in rows.values())
    assert sum(r["zeros"] for r in rows.values()) == round(total * 0.7)
    for name, row in rows.items():
        assert row["zeros"] == round(expected[name] * row["parameters"]), name
    assert len(set(expected.values())) > 1


def test_model_wide_allocations_need_one_schedule_and_one_strategy():
    model = keras.Sequential([
        keras.Input((4,)),
        tfprune.PruningWrapper(L.Dense(4), 0.5, strategy="dense"),
        tfprune.PruningWrapper(L.Dense(1), 0.3, strategy="dense"),
    ])
    model.compile("sgd", "mse")
    callback = tfprune.PruningCallback()
    callback.set_model(model)
    with pytest.raises(ValueError, match=r"must share one schedule\. Received: schedules="):
        callback.on_train_begin()
    mixed = keras.Sequential([
        keras.Input((4,)),
        tfprune.PruningWrapper(L.Dense(4), 0.5, strategy="dense"),
        tfprune.PruningWrapper(L.Dense(1), 0.5),
    ])
    mixed.compile("sgd", "mse")
    callback.set_model(mixed)
    with pytest.raises(ValueError, match=r"share one strategy.*Received: strategies="):
        callback.on_train_begin()


def test_uniform_wrappers_keep_their_own_schedules(rng):
    model = keras.Sequential([
        keras.Input((4,)),
        tfprune.PruningWrapper(L.Dense(10, name="a"), 0.5),
        tfprune.PruningWrapper(L.Dense(5, name="b"), schedules.Constant(0.8, begin_step=3)),
    ])
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 5)).astype("float32")
    model.compile("sgd", "mse")
    model.fit(x, y, batch_size=1, verbose=0, callbacks=[tfprune.PruningCallback(update_every=1)])
    a, b = find_wrappers(model)
    assert _zeros(a.masks[0].numpy()) == 20 and _zeros(b.masks[0].numpy()) == 40
    assert int(a.pruning_step.numpy()) == 0 and int(b.pruning_step.numpy()) == 3


# ----------------------------------------------------- presets and protection
def test_regression_strategy_leaves_input_layer_and_head_unpruned(rng):
    x, y = _data(rng)
    model = _mlp()
    pruned = tfprune.prune(model, _schedule(0.6), strategy="regression")
    assert [w.name for w in find_wrappers(pruned)] == ["pruned_d2"]
    callback = _fit(pruned, x, y)
    assert sorted(callback.plan.protected) == ["d1/kernel", "head/kernel"]
    rows = _kernels(pruned)
    assert rows["d1/kernel"]["zeros"] == 0 and rows["head/kernel"]["zeros"] == 0
    assert rows["d2/kernel"]["zeros"] == round(96 * 0.6)
    with pytest.raises(ValueError, match=r"nothing is left to prune\. Received: strategy="):
        tfprune.prune(keras.Sequential([keras.Input((3,)), L.Dense(1)]), 0.5,
                      strategy="regression")
    with pytest.raises(ValueError, match=r"Received: strategy='sparse'$"):
        tfprune.prune(model, 0.5, strategy="sparse")


def test_auto_picks_recurrent_for_an_lstm_and_dense_for_an_mlp(rng):
    x, y = _data(rng, (5, 3))
    pruned = tfprune.prune(_rnn(L.LSTM), _schedule(0.5), strategy="auto")
    callback = _fit(pruned, x, y)
    assert callback.plan.strategy == strategies.recurrent()
    cell = pruned.get_layer("pruned_rnn").layer.cell
    for kernel in (cell.kernel.numpy(), cell.recurrent_kernel.numpy()):
        # The global ranking sets the tensor's share; each gate block loses as much.
        blocks = {_zeros(kernel[:, gate * 6:(gate + 1) * 6]) for gate in range(4)}
        assert len(blocks) == 1 and blocks != {0}
    report = tfprune.sparsity_report(tfprune.strip(pruned))
    assert abs(report.zeros - round(report.parameters * 0.5)) <= 2 * 2  # gate blocks round

    x, y = _data(rng)
    pruned = tfprune.prune(_mlp(), _schedule(0.5), strategy="auto")
    callback = _fit(pruned, x, y)
    assert callback.plan.strategy == strategies.dense()


def test_quality_guard_freezes_pruning_and_restores_the_last_good_masks(rng):
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) + 0.01 * rng.normal(size=(256, 1))).astype("float32")
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, activation="relu", name="d1"),
                              L.Dense(1, name="head")])
    model.compile(keras.optimizers.Adam(0.02), "mse", metrics=["mae"])
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    # Aggressive: 0 -> 0.98 in 30 steps (about 4 epochs of 7 steps).
    pruned = tfprune.prune(model, schedules.PolynomialDecay(0.0, 0.98, 0, 30, power=1))
    pruned.compile(keras.optimizers.Adam(0.01), "mse", metrics=["mae"])

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.masks, self.steps = [], []

        def on_epoch_end(self, epoch, logs=None):
            self.masks.append({k: v.copy() for k, v in _masks(self.model).items()})
            self.steps.append({int(w.pruning_step.numpy()) for w in find_wrappers(self.model)})

    guard = tfprune.QualityGuard(monitor="val_mae", max_degradation=0.05, verbose=0)
    recorder = Recorder()
    history = pruned.fit(x[:224], y[:224], validation_data=(x[224:], y[224:]), epochs=8,
                         batch_size=32, verbose=0, shuffle=False,
                         callbacks=[tfprune.PruningCallback(update_every=2), guard, recorder])
    assert guard.stopped and 0 < guard.stopped_epoch < 7
    stop = guard.stopped_epoch
    assert all(w.frozen for w in find_wrappers(pruned))
    # Restored: the masks of the last good epoch, kept until the end.
    for later in range(stop, 8):
        for name, mask in recorder.masks[stop - 1].items():
            np.testing.assert_array_equal(recorder.masks[later][name], mask, err_msg=name)
        assert recorder.steps[later] == recorder.steps[stop - 1]
    sparsity = tfprune.sparsity_report(pruned).sparsity
    assert sparsity == pytest.approx(guard.best_sparsity) and sparsity < 0.9
    assert history.history["sparsity"][-1] == pytest.approx(sparsity)


# ----------------------------------------------------------- regularizer
def test_a_regularizer_pulls_the_next_pruned_weights_toward_zero(rng):
    x, y = _data(rng)
    model = _mlp()
    schedule = schedules.PolynomialDecay(0.0, 0.5, 0, 40)
    runs = {}
    for name, regularizer in [("plain", None), ("l1", criteria.L1Regularizer(0.5))]:
        pruned = tfprune.prune(model, schedule, strategy=strategies.Strategy(
            regularizer=regularizer))
        pruned.compile(keras.optimizers.SGD(0.01), "mse")
        callback = tfprune.PruningCallback(update_every=20)
        callback.set_model(pruned)
        callback.on_train_begin()  # step 0: mask at 0 and, with L1, next mask at step 20
        runs[name] = pruned.get_layer("pruned_d1").slots[0]
        pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False,
                   callbacks=[callback])
        pruned(x[:2])  # inference adds no penalty
        assert not pruned.losses
    slot = runs["l1"]
    assert runs["plain"].next_mask is None
    doomed = slot.next_mask.numpy() == 0
    assert doomed.sum() == round(96 * schedule(20)) and np.all(slot.mask.numpy() == 1)
    # Ten steps of the L1 pull: the weights the next update prunes shrank.
    pulled = np.abs(slot.weight.variable.numpy()[doomed]).mean()
    control = np.abs(runs["plain"].weight.variable.numpy()[doomed]).mean()
    assert pulled < 0.7 * control


# ------------------------------------------------------------ saving
TABLE = strategies.SensitivityTable("mae", "min", 1.0, [0.5, 0.9], {
    "d1": {"n_params": 96, "values": [1.01, 1.1]},
    "d2": {"n_params": 96, "values": [1.2, 1.5]},
    "head": {"n_params": 8, "values": [1.5, 3.0]},
})
SAVED = {
    "dense": lambda: ("dense", _mlp),
    "recurrent_units": lambda: (strategies.recurrent(units=True), lambda: _rnn(L.GRU)),
    "regression": lambda: ("regression", _mlp),
    "auto": lambda: ("auto", lambda: _rnn(L.LSTM)),
    "movement_block_global": lambda: (
        strategies.Strategy("movement", granularity.Block((4, 1)),
                            strategies.Global(normalize="l2"),
                            regularizer=criteria.L1Regularizer(1e-3)), _mlp),
    "taylor_nm_per_layer": lambda: (
        strategies.Strategy(criteria.Taylor(), granularity.NM(2, 4),
                            strategies.PerLayer({"d*": 0.5}, default=0.25)), _mlp),
    "random_sensitivity_group_lasso": lambda: (
        strategies.Strategy(criteria.Random(3), "unstructured",
                            strategies.SensitivityAllocation(TABLE),
                            regularizer=criteria.GroupLasso(1e-3)), _mlp),
}


def test_every_strategy_saves_and_loads_in_a_fresh_process(rng, tmp_path, run_python):
    expected = {}
    for name, make in SAVED.items():
        strategy, build = make()
        model = build()
        shape = model.inputs[0].shape[1:]
        x, y = _data(rng, tuple(shape))
        pruned = tfprune.prune(model, _schedule(0.5), strategy=strategy)
        pruned.compile(keras.optimizers.Adam(0.01), "mse")
        pruned.fit(x, y, batch_size=8, verbose=0, shuffle=False,  # 5 steps: mid-schedule
                   callbacks=[tfprune.PruningCallback(update_every=2)])
        pruned.save(tmp_path / f"{name}.keras")
        state = {f"{w.name}|{i}|{v.name}": v.numpy()
                 for w in find_wrappers(pruned) for i, v in enumerate(w.weights)}
        np.savez(tmp_path / f"{name}.npz", x=x, y=y, out=pruned.predict(x, verbose=0), **state)
        expected[name] = {
            "strategy": keras.saving.serialize_keras_object(find_wrappers(pruned)[0].strategy),
            "n_state": len(state),
        }
    result = run_python(
        f"""
        import keras, numpy as np
        import tfprune
        from tfprune import find_wrappers

        out = {{}}
        for name in {list(SAVED)!r}:
            data = np.load({str(tmp_path)!r} + f"/{{name}}.npz")
            model = keras.saving.load_model({str(tmp_path)!r} + f"/{{name}}.keras")
            wrappers = find_wrappers(model)
            state = {{f"{{w.name}}|{{i}}|{{v.name}}": v.numpy()
                     for w in wrappers for i, v in enumerate(w.weights)}}
            same = all(np.array_equal(v, data[k]) for k, v in state.items())
            predicted = np.array_equal(model.predict(data["x"], verbose=0), data["out"])
            model.fit(data["x"], data["y"], batch_size=8, epochs=1, verbose=0,
                      callbacks=[tfprune.PruningCallback(update_every=2)])
            out[name] = {{
                "strategy": keras.saving.serialize_keras_object(wrappers[0].strategy),
                "n_state": len(state), "same": same, "predicted": predicted,
                "steps": sorted({{int(w.pruning_step.numpy()) for w in wrappers}}),
                "report": tfprune.sparsity_report(model).to_dict(),
            }}
        json.dump(out, open(RESULT, "w"), default=str)
        """,
        timeout=240,
    )
    for name, got in result.items():
        want = expected[name]
        assert json.dumps(got["strategy"], sort_keys=True) == json.dumps(
            json.loads(json.dumps(want["strategy"])), sort_keys=True), name
        assert got["n_state"] == want["n_state"] and got["same"] and got["predicted"], name
        assert got["steps"] == [END], name  # resumed to the end of the schedule
    rows = {r["layer"]: r for r in result["taylor_nm_per_layer"]["report"]["tensors"]}
    assert rows["d1"]["sparsity"] == rows["d2"]["sparsity"] == 0.5
    assert rows["head"]["zeros"] == round(8 * 0.25)


def test_resuming_a_movement_run_ends_with_the_same_masks(rng, tmp_path):
    x, y = _data(rng)
    strategy = strategies.Strategy("movement", "unstructured", "global")
    schedule = schedules.PolynomialDecay(0.1, 0.7, begin_step=2, end_step=25)
    args = dict(batch_size=4, verbose=0, shuffle=False)  # 10 steps an epoch
    model = _mlp()

    straight = tfprune.prune(model, schedule, strategy=strategy)
    straight.compile(keras.optimizers.Adam(0.01), "mse")
    straight.fit(x, y, epochs=3, callbacks=[tfprune.PruningCallback(update_every=4)], **args)

    resumed = tfprune.prune(model, schedule, strategy=strategy)
    resumed.compile(keras.optimizers.Adam(0.01), "mse")
    resumed.fit(x, y, epochs=1, callbacks=[tfprune.PruningCallback(update_every=4)], **args)
    resumed.save(tmp_path / "mid.keras")  # movement scores are saved with it
    resumed = keras.saving.load_model(tmp_path / "mid.keras")
    resumed.fit(x, y, epochs=3, initial_epoch=1,
                callbacks=[tfprune.PruningCallback(update_every=4)], **args)

    a, b = _masks(straight), _masks(resumed)
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    total = sum(r["parameters"] for r in _kernels(resumed).values())
    assert sum(r["zeros"] for r in _kernels(resumed).values()) == round(total * 0.7)


def test_a_target_the_sensitivity_table_cannot_reach_fails_in_prune(rng):
    x, y = _data(rng)
    model = _mlp()
    table = tfprune.sensitivity(model, (x, y), sparsities=(0.5,), verbose=0)
    strategy = strategies.Strategy(allocation=strategies.SensitivityAllocation(table))
    with pytest.raises(ValueError, match=r"only reaches 0\.5 overall.*Received: sparsity=0\.8$"):
        tfprune.prune(model, 0.8, strategy=strategy)


def test_the_default_strategy_prunes_like_plain_magnitude_pruning(rng):
    # Per gate block, exactly round(n * s), even where that empties a tiny
    # tensor (the head: round(4 * 0.9) = 4), and ranked by magnitude.
    model = keras.Sequential([keras.Input((3, 2)), L.LSTM(4, name="lstm"), L.Dense(1, name="head")])
    pruned = tfprune.prune(model, schedules.Constant(0.9))
    before = {pw.name: pw.variable.numpy()
              for w in find_wrappers(pruned) for pw in w.pruned_weights}
    pruned.compile("sgd", "mse")
    callback = tfprune.PruningCallback()
    callback.set_model(pruned)
    callback.on_train_begin()
    for w in find_wrappers(pruned):
        for pw, mask in zip(w.pruned_weights, w.masks):
            expected = magnitude_mask(before[pw.name], 0.9, None, pw.gates)
            np.testing.assert_array_equal(mask.numpy(), np.asarray(expected), err_msg=pw.name)
    assert _zeros(pruned.get_layer("pruned_head").masks[0].numpy()) == 4
