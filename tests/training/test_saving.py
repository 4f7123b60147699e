"""Saving pruned models: `.keras` files, checkpoints, resumed training."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import schedules
from tfprune import find_wrappers

L = keras.layers


def _model():
    return keras.Sequential(
        [keras.Input((6,)), L.Dense(12, name="a"), L.BatchNormalization(name="bn"),
         L.Dense(1, name="head")],
        name="net",
    )


def _data(rng, n=40):
    return rng.random((n, 6)).astype("float32"), rng.random((n, 1)).astype("float32")


def test_keras_file_loads_in_a_fresh_process_without_custom_objects(
    rng, tmp_path, masks_of, run_python
):
    schedule = schedules.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=20, power=1)
    pruned = tfprune.prune(_model(), schedule)
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    x, y = _data(rng)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=4)])  # 10 steps: mid-schedule
    pruned.save(tmp_path / "pruned.keras")
    masks = masks_of(pruned)
    assert 0 < np.mean([1 - m.mean() for m in masks.values()]) < 0.75
    np.savez(tmp_path / "expected.npz", x=x, y=y, out=pruned.predict(x, verbose=0), **masks)

    result = run_python(
        f"""
        import keras, numpy as np
        import tfprune

        data = np.load({str(tmp_path / "expected.npz")!r})
        model = keras.saving.load_model({str(tmp_path / "pruned.keras")!r})
        wrappers = tfprune._training.wrapper.find_wrappers(model)
        names = [pw.name for w in wrappers for pw in w.pruned_weights]
        masks_equal = all(
            np.array_equal(m.numpy(), data[pw.name])
            for w in wrappers for pw, m in zip(w.pruned_weights, w.masks)
        )
        out_equal = np.array_equal(model.predict(data["x"], verbose=0), data["out"])
        iterations = int(model.optimizer.iterations.numpy())
        steps = sorted({{int(w.pruning_step.numpy()) for w in wrappers}})
        model.fit(data["x"], data["y"], batch_size=4, epochs=1, verbose=0,
                  callbacks=[tfprune.PruningCallback(update_every=4)])
        json.dump({{
            "names": names,
            "masks_equal": masks_equal,
            "out_equal": out_equal,
            "iterations": iterations,
            "steps": steps,
            "schedule": keras.saving.serialize_keras_object(wrappers[0].schedule),
            "final": tfprune.sparsity_report(model).to_dict(),
        }}, open(RESULT, "w"))
        """
    )
    assert result["names"] == list(masks)
    assert result["masks_equal"] and result["out_equal"]
    assert result["iterations"] == 10
    assert result["steps"] == [8]
    assert keras.saving.deserialize_keras_object(result["schedule"]) == schedule
    # Training goes on in the new process and ends on schedule.
    tensors = {f"{t['layer']}/{t['weight']}": t for t in result["final"]["tensors"]}
    assert tensors["a/kernel"]["zeros"] == round(72 * 0.75)
    assert tensors["head/kernel"]["zeros"] == round(12 * 0.75)


@pytest.mark.parametrize("checkpoint_first", [True, False], ids=["checkpoint_first", "pruning_first"])
@pytest.mark.parametrize("in_step", [pytest.param(True, marks=pytest.mark.tensorflow_only), False],
                         ids=["in_step", "between_steps"])
def test_model_checkpoint_is_as_sparse_as_its_report(rng, tmp_path, checkpoint_first, in_step):
    schedule = schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=18, power=1)
    pruned = tfprune.prune(_model(), schedule)
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt_{batch:02d}.keras"), save_freq=6)
    pruning = tfprune.PruningCallback(update_every=3, in_step=in_step)
    callbacks = [checkpoint, pruning] if checkpoint_first else [pruning, checkpoint]
    x, y = _data(rng)
    pruned.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=callbacks)

    files = sorted(tmp_path.glob("ckpt_*.keras"))
    assert [f.name for f in files] == ["ckpt_06.keras", "ckpt_12.keras", "ckpt_18.keras"]
    sparsities = []
    for path in files:
        report = tfprune.sparsity_report(path)
        loaded = keras.saving.load_model(path)
        # The raw variables hold exactly the zeros that the report counts.
        for wrapper in find_wrappers(loaded):
            for pw in wrapper.pruned_weights:
                value = pw.variable.numpy()
                row = report[pw.name]
                assert row["zeros"] == value.size - np.count_nonzero(value)
        stripped = tfprune.sparsity_report(tfprune.strip(loaded))
        assert stripped.to_dict()["tensors"] == report.to_dict()["tensors"]
        sparsities.append(report["a/kernel"]["sparsity"])
    assert 0 < sparsities[0] < sparsities[1] < sparsities[2]
    # Between steps, a checkpoint written before the pruning callback ran at
    # step 18 shows the masks of the previous update, at step 15; inside the
    # step, the update of step 18 is done before any callback sees the batch.
    last_update = 15 if checkpoint_first and not in_step else 18
    assert sparsities[-1] == round(72 * schedule(last_update)) / 72


def test_resumed_training_ends_with_the_same_masks(rng, tmp_path, masks_of):
    model = _model()
    x, y = _data(rng)
    schedule = schedules.PolynomialDecay(0.1, 0.7, begin_step=2, end_step=25)
    fit_args = dict(batch_size=4, verbose=0, shuffle=False)  # 10 steps an epoch

    straight = tfprune.prune(model, schedule)
    straight.compile(keras.optimizers.Adam(0.01), "mse")
    straight.fit(x, y, epochs=3, callbacks=[tfprune.PruningCallback(update_every=4)], **fit_args)

    resumed = tfprune.prune(model, schedule)
    resumed.compile(keras.optimizers.Adam(0.01), "mse")
    resumed.fit(x, y, epochs=1, callbacks=[tfprune.PruningCallback(update_every=4)], **fit_args)
    resumed.save(tmp_path / "mid.keras")  # step 10, just updated; next update at 14
    resumed = keras.saving.load_model(tmp_path / "mid.keras")
    resumed.fit(x, y, epochs=3, initial_epoch=1, callbacks=[tfprune.PruningCallback(update_every=4)],
                **fit_args)

    assert int(resumed.optimizer.iterations.numpy()) == int(straight.optimizer.iterations.numpy()) == 30
    straight_masks, resumed_masks = masks_of(straight), masks_of(resumed)
    assert list(straight_masks) == list(resumed_masks)
    for name in straight_masks:
        np.testing.assert_array_equal(resumed_masks[name], straight_masks[name], err_msg=name)
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    assert {int(w.pruning_step.numpy()) for w in find_wrappers(resumed)} == {25}
