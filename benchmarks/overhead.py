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
   The train step alone is timed too (its compiled function called
   directly, in alternating blocks of 100 steps), and its graph ops are
   counted, with the ops pruning adds to the plain step.
2. One mask update of a 10k-weight stack (the update benchmark's smallest
   model), each call to a higher target (so every call selects anew), from
   the outside in: the callback's `update_masks`, the
   compiled `MaskUpdate` call with its host work (schedule counts, reading
   back the zero counts), the compiled function alone, a `tf.function` that
   only reads and assigns the same variables, and an empty `tf.function`
   call. The last two are the floor of any compiled update on this machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

import tfprune
from tfprune._base import backend
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
    fits = {
        "plain": (plain, list),
        "masks and constraint (as run)": (pruned, callbacks),
        "forward mask only": (forward_only, callbacks),
        "constraint only": (constraint_only, list),
    }
    times = _models.time_fits(keras, fits, data.x_train, data.y_train, cfg.batch_size,
                              epochs, rounds)
    base = _models.median(times["plain"])
    return {
        "task": "housing", "steps_per_epoch": _models.steps_per_epoch(cfg, len(data.x_train)),
        "epochs": epochs, "rounds": rounds,
        "epoch_ms": {k: round(1000 * _models.median(v), 1) for k, v in times.items()},
        "ratio": {k: round(_models.median(v) / base, 3) for k, v in times.items()},
        "epoch_s": times,
        "step": _step_parts(fits, cfg, data, quick),
    }


#: Graph ops that do no work of their own at run time.
_INERT = ("Const", "Placeholder", "Identity", "NoOp")


def _step_ops(model, x, y) -> collections.Counter:
    """Ops of the traced train step by type (nested functions included),
    without the inert ones."""
    concrete = tf.function(model.train_step).get_concrete_function((x, y))
    ops = collections.Counter(op.type for op in concrete.graph.get_operations())
    for function in concrete.graph.as_graph_def().library.function:
        ops.update(node.op for node in function.node_def)
    return collections.Counter({k: v for k, v in ops.items() if k not in _INERT})


def _step_parts(fits, cfg, data, quick: bool) -> dict:
    """The train step alone, for each fit of `_fit_parts`: its ops, and
    its time, called directly in blocks of 100 steps, the variants
    alternating block by block (no callback or epoch work in between)."""
    blocks = 3 if quick else 30
    x = tf.constant(data.x_train[: cfg.batch_size])
    y = tf.constant(data.y_train[: cfg.batch_size])
    dataset = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)) \
        .batch(cfg.batch_size, drop_remainder=True).repeat()
    functions, ops, callbacks = {}, {}, []
    for name, (model, make_callbacks) in fits.items():
        for callback in make_callbacks():  # the wrappers train only with it
            callback.set_model(model)
            callback.set_params({"epochs": 1, "steps": 10**9, "verbose": 0})
            callback.on_train_begin()
            callbacks.append(callback)
        ops[name] = _step_ops(model, x, y)
        model.train_function = None
        model.make_train_function()
        functions[name] = (model.train_function, iter(dataset))
    us = {name: [] for name in functions}
    for _ in range(blocks):
        for name, (function, iterator) in functions.items():
            for _ in range(10):
                function(iterator)
            start = time.perf_counter()
            for _ in range(100):
                function(iterator)
            us[name].append((time.perf_counter() - start) * 1e4)
    for callback in callbacks:
        callback.on_train_end()
    plain = ops["plain"]
    return {
        "blocks": blocks,
        "us": {k: round(_models.median(v), 1) for k, v in us.items()},
        "ratio": {k: round(_models.median(v) / _models.median(us["plain"]), 3)
                  for k, v in us.items()},
        "ops": {k: sum(v.values()) for k, v in ops.items()},
        "added_ops": {k: dict(sorted((v - plain).items())) for k, v in ops.items()
                      if k != "plain"},
        "block_us": us,
    }


def _wrappers(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, tfprune.PruningWrapper)]


def _update_parts(quick: bool) -> dict:
    repeats = 20 if quick else 300
    model = _models.big_dense_model(keras, 10_000)
    n_weights = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers)
    # Each timed call of the first three parts raises the target a little
    # (30% to 90% over the calls), so every call selects anew, as the
    # updates of a running schedule do; at a target already reached the
    # update would only keep the masks.
    end = 3 * (repeats + 3) + 10
    pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.3, 0.9, 0, end, power=1))
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
    counts = {step: tf.convert_to_tensor(update.counts(schedule(step), schedule.final_sparsity))
              for step in range(end)}

    # The update's traced function, compiled on its own (the callback's
    # path packs the step and counts into one array first).
    traced = backend.Stateful(update.traced_update)

    def compiled():
        zeros, _ = traced(counts[next(clock)], None, step_t)
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
    step = fit["step"]
    rows = ["| constant masks (housing MLP) | epoch (ms) | over plain fit | train step alone "
            "(us) | over plain step | ops in the step | ops added to the plain step |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, ms in fit["epoch_ms"].items():
        added = step["added_ops"].get(name)
        added = ", ".join(f"{n} {op}" for op, n in added.items()) if added else "-"
        rows.append(f"| {name} | {ms:.1f} | {fit['ratio'][name]:.3f}x | {step['us'][name]:.0f} "
                    f"| {step['ratio'][name]:.3f}x | {step['ops'][name]} | {added} |")
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
