"""Where the remaining cost of pruning goes: the forward mask, the mask
constraint, and the floor of one compiled update.

    python -m benchmarks.overhead            # full recipe, writes docs/overhead.json
    python -m benchmarks.overhead --quick    # a smoke run, writes nothing

Two measurements on the California-housing MLP of the cost benchmark
(16-128-64-1, batch 128, 113 steps per epoch), TensorFlow backend:

1. Epoch time with constant masks (masks fixed from the first step, so no
   update runs), split into its two parts: a pruned fit as users run it
   (forward multiply by the mask + the constraint that keeps pruned
   weights at zero after each optimizer step), the same with the
   constraints removed (forward multiply only), and a plain model whose
   kernels carry the mask as a Keras constraint (constraint only). Each
   over a plain fit of the same model, fits alternated for several rounds.
2. One mask update of a 10k-weight stack (the update benchmark's smallest
   model), from the outside in: the callback's `update_masks`, the
   compiled `MaskUpdate` call with its host work (schedule counts, reading
   back the zero counts), the compiled function alone, a `tf.function` that
   only reads and assigns the same variables, and an empty `tf.function`
   call. The last two are the floor of any compiled update on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

import tfprune
from benchmarks import _models
from benchmarks import _tfprune_side as side

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _FixedMask(keras.constraints.Constraint):
    """Multiplies a weight by a fixed 0/1 mask (a plain Keras constraint)."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, w):
        return w * self.mask


def _fit_parts(quick: bool) -> dict:
    cfg = _models.task_configs(quick, ["housing"])["housing"]
    data = _models.load_data(cfg)
    epochs, rounds = (1, 1) if quick else (4, 5)
    keras.utils.set_random_seed(0)
    plain = side._model(cfg, data)
    _models.compile_model(keras, plain, cfg)
    weights = plain.get_weights()

    pruned = tfprune.prune(side._model(cfg, data, weights), tfprune.schedules.Constant(0.9))
    _models.compile_model(keras, pruned, cfg)
    forward_only = tfprune.prune(side._model(cfg, data, weights), tfprune.schedules.Constant(0.9))
    _models.compile_model(keras, forward_only, cfg)
    for wrapper in _wrappers(forward_only):
        wrapper.restore_constraints()
    constraint_only = side._model(cfg, data, weights)
    rng = np.random.default_rng(0)
    for layer in constraint_only.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            mask = (rng.random(tuple(kernel.shape)) >= 0.9).astype("float32")
            kernel.constraint = _FixedMask(tf.constant(mask))
    _models.compile_model(keras, constraint_only, cfg)

    callbacks = lambda: [tfprune.PruningCallback(update_every=100)]  # noqa: E731
    times = _models.time_fits(keras, {
        "plain": (plain, list),
        "masks and constraint (as run)": (pruned, callbacks),
        "forward mask only": (forward_only, callbacks),
        "constraint only": (constraint_only, list),
    }, data.x_train, data.y_train, cfg.batch_size, epochs, rounds)
    base = _models.median(times["plain"])
    return {
        "task": "housing", "steps_per_epoch": _models.steps_per_epoch(cfg, len(data.x_train)),
        "epochs": epochs, "rounds": rounds,
        "epoch_ms": {k: round(1000 * _models.median(v), 1) for k, v in times.items()},
        "ratio": {k: round(_models.median(v) / base, 3) for k, v in times.items()},
        "epoch_s": times,
    }


def _wrappers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, tfprune.PruningWrapper)]


def _update_parts(quick: bool) -> dict:
    repeats = 20 if quick else 300
    model = _models.big_dense_model(keras, 10_000)
    n_weights = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers)
    pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.5, 0, 10**9))
    pruned.compile("adam", "mse")
    callback = tfprune.PruningCallback(update_every=1)
    callback.set_model(pruned)
    callback.on_train_begin()
    clock = iter(range(1, 10**9))
    (cohort,) = callback._cohorts
    update = cohort.update
    schedule = cohort.schedule

    def full():
        callback.update_masks(next(clock))

    def mask_update():
        step = next(clock)
        update(schedule(step), step=step, final_sparsity=schedule.final_sparsity)

    step_t = tf.constant(5, "int64")
    counts = tf.convert_to_tensor(update._counts(schedule(5), schedule.final_sparsity, None,
                                                 step_t))

    def compiled():
        zeros, _ = update._assign(counts, None, step_t)
        zeros.numpy()

    slots = update.slots

    @tf.function
    def traffic():
        out = []
        for slot in slots:
            value = tf.identity(slot.weight.variable.value)
            mask = tf.identity(slot.mask.value)
            slot.mask.assign(mask)
            slot.weight.variable.assign(value)
            out.append(tf.reduce_sum(tf.cast(tf.equal(value, 0), "int32")))
        return tf.stack(out)

    @tf.function
    def empty():
        return tf.constant(0)

    parts = {
        "callback.update_masks": full,
        "MaskUpdate call (host counts + compiled call + read back)": mask_update,
        "compiled update alone (+ read back)": compiled,
        "tf.function reading and assigning the same variables": lambda: traffic().numpy(),
        "empty tf.function call": lambda: empty().numpy(),
    }
    ms = {name: round(1000 * _models.median(_models.timed(fn, repeats, warmup=3)), 3)
          for name, fn in parts.items()}
    return {"weights": n_weights, "layers": len(slots), "repeats": repeats, "ms": ms}


def table(result: dict) -> str:
    fit, update = result["fit"], result["update"]
    rows = ["| constant masks (housing MLP) | epoch (ms) | over plain fit |",
            "| --- | ---: | ---: |"]
    for name, ms in fit["epoch_ms"].items():
        rows.append(f"| {name} | {ms:.1f} | {fit['ratio'][name]:.3f}x |")
    rows += ["", f"| one update, {update['weights']:,} weights in {update['layers']} layers | "
             "median (ms) |", "| --- | ---: |"]
    for name, ms in update["ms"].items():
        rows.append(f"| {name} | {ms:.3f} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, few repeats")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "overhead.json"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = {"fit": _fit_parts(args.quick), "update": _update_parts(args.quick),
              "machine": platform.machine()}
    # docs/pruning.md quotes the table.
    return _models.save_result(result, table(result), start=start, quick=args.quick,
                               out=args.out, command="python -m benchmarks.overhead")


if __name__ == "__main__":
    main()
