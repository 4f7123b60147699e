"""Pruning in a custom `tf.GradientTape` training loop (handwritten digits).

`tfprune.PruningCallback` is an ordinary Keras callback: outside `fit`, the
loop calls its hooks itself (`set_model`, `on_train_begin`,
`on_train_batch_end` after every optimizer step, `on_train_end`). Its clock
is `model.optimizer.iterations`, so the optimizer is attached to the model
with `compile(optimizer=...)`; `optimizer.apply` both advances the clock and
applies the mask constraints that keep pruned weights at zero.

The model, an MLP 64 -> 128 -> 64 -> 10 on scikit-learn's 8x8 digits, trains
dense for the first third of the epochs, is pruned gradually to `--sparsity`
during the second third and recovers during the last one.

Run from the repository root:

```
python examples/custom_training_loop.py            # a few seconds
python examples/custom_training_loop.py --quick    # used by the tests
```
"""

from __future__ import annotations

import argparse
import math
import os

import keras
import numpy as np
import tensorflow as tf

import tfprune

if __package__:
    from examples import _common
    from examples import datasets
else:  # run as a script: python examples/custom_training_loop.py
    import _common
    import datasets

DEFAULT_OUT = os.path.join("artifacts", "custom_training_loop")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few epochs, for tests")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default 30; quick 6)"
    )
    parser.add_argument(
        "--sparsity", type=float, default=0.8, help="final sparsity of the pruned weights"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 6 if args.quick else 30
    if args.epochs < 3:
        parser.error("--epochs must be >= 3 (dense, pruning and recovery phases)")
    if not 0 <= args.sparsity < 1:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    return args


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu", name="hidden_1"),
            keras.layers.Dense(64, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_mlp",
    )


def accuracy(model, x, y) -> float:
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def main(argv=None) -> dict:
    """Runs the example; returns the summary also written to `summary.json`."""
    args = parse_args(argv)
    timer = _common.Timer()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    data = datasets.load_digits(seed=args.seed)
    x_train, y_train = data.x_train, data.y_train
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    phase = args.epochs // 3
    begin_step, end_step = phase * steps_per_epoch, 2 * phase * steps_per_epoch
    print(f"{data}\npruning from step {begin_step} to {end_step}, {steps_per_epoch} steps/epoch")

    pruned = tfprune.prune(
        build_model(), tfprune.schedules.PolynomialDecay(0.0, args.sparsity, begin_step, end_step)
    )
    optimizer = keras.optimizers.Adam(1e-3)
    pruned.compile(optimizer=optimizer)  # the callback's clock: pruned.optimizer.iterations
    optimizer.build(pruned.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, pruned(x, training=True))
        grads = tape.gradient(loss, pruned.trainable_variables)
        optimizer.apply(grads, pruned.trainable_variables)  # also applies the mask constraints
        return loss

    callback = tfprune.PruningCallback(update_every=max(1, steps_per_epoch // 2))
    callback.set_model(pruned)
    callback.on_train_begin()  # before the first traced step: it activates the wrappers
    rng = np.random.default_rng(args.seed)
    history = {"loss": [], "val_accuracy": [], "sparsity": []}
    step = 0
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            losses.append(float(train_step(x_train[batch], y_train[batch])))
            callback.on_train_batch_end(step)
            step += 1
        history["loss"].append(float(np.mean(losses)))
        history["val_accuracy"].append(accuracy(pruned, data.x_val, data.y_val))
        history["sparsity"].append(float(callback.sparsity))
        if epoch + 1 == phase:  # last dense epoch: the reference accuracy
            dense_test_accuracy = accuracy(pruned, data.x_test, data.y_test)
        print(
            f"epoch {epoch + 1:3d}  loss {history['loss'][-1]:.4f}  "
            f"val accuracy {history['val_accuracy'][-1]:.2%}  sparsity {callback.sparsity:.2%}"
        )
    callback.on_train_end()

    stripped = tfprune.strip(pruned)
    outputs_pruned = keras.ops.convert_to_numpy(pruned(data.x_test, training=False))
    outputs_stripped = keras.ops.convert_to_numpy(stripped(data.x_test, training=False))
    report = tfprune.sparsity_report(stripped)
    model_path = os.path.join(args.out, "digits_pruned.keras")
    stripped.save(model_path)
    plot_path = _common.plot_sparsity_and_metric(
        os.path.join(args.out, "training.png"),
        history["sparsity"],
        history["val_accuracy"],
        "validation accuracy",
        [("dense", 1), ("pruning", phase + 1), ("recovery", 2 * phase + 1)],
        f"Digits MLP, custom training loop, pruned to {args.sparsity:.0%}",
    )

    summary = {
        "quick": args.quick,
        "target_sparsity": args.sparsity,
        "steps": int(keras.ops.convert_to_numpy(optimizer.iterations)),
        "schedule": {"begin_step": begin_step, "end_step": end_step},
        "dense_test_accuracy": dense_test_accuracy,
        "test_accuracy": accuracy(stripped, data.x_test, data.y_test),
        "stripped_max_abs_diff": float(np.max(np.abs(outputs_pruned - outputs_stripped))),
        "sparsity": report.sparsity,
        "sparsity_report": report.to_dict(),
        "history": history,
        "files": {"model": model_path, "plot": plot_path},
    }
    print()
    print(report)
    print(
        f"\ntest accuracy {summary['test_accuracy']:.2%} at sparsity {report.sparsity:.2%} "
        f"(dense, before pruning: {dense_test_accuracy:.2%}; "
        f"stripped vs pruned outputs differ by at most {summary['stripped_max_abs_diff']:.1e})"
    )
    summary["seconds"] = timer.elapsed()
    _common.save_json(os.path.join(args.out, "summary.json"), summary)
    wrote = _common.written(plot_path, "model", "summary.json")
    print(f"wrote {args.out}/ ({wrote}) in {summary['seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
