"""Handwritten digits: an MLP pruned to 90% unstructured and to 2:4 sparsity.

End to end on real data (scikit-learn's 1,797 8x8 digits, stratified
70/15/15 split, pixels standardized on the training split):

1. Train a dense baseline MLP (64 -> 256 -> 128 -> 10) with early stopping.
2. From the baseline's weights, fine-tune two pruned copies:
   - 90% unstructured: magnitude pruning, one global ranking of the
     weights of all layers (`strategy="dense"`);
   - 2:4: `tfprune.granularity.NM(2, 4)` with `Uniform()` allocation, at
     most 2 non-zeros in every 4 consecutive weights along each kernel's
     input dimension, the pattern of 2:4 sparse tensor cores (50%).
   Both ramp their sparsity up with `PolynomialDecay`, then recover.
3. Strip both, check the 2:4 pattern weight by weight, and export the
   three models to TFLite (float32 and dynamic-range int8, sparse storage,
   each file verified in LiteRT by the exporter).

It reports test accuracy, sparsity and TFLite sizes, and writes the models,
`summary.json` and `training.png` to `--out`.

`--quick` trains 4 + 4 + 4 epochs.

Run from the repository root:

```
python examples/digits_dense.py              # about 15 s on 2 CPU cores
python examples/digits_dense.py --quick      # a few seconds, used by the tests
python examples/digits_dense.py --sparsity 0.95 --out /tmp/digits
```
"""

from __future__ import annotations

import argparse
import math
import os

import keras
import numpy as np

import tfprune

if __package__:
    from examples import _common
    from examples import datasets
else:  # run as a script: python examples/digits_dense.py
    import _common
    import datasets

DEFAULT_OUT = os.path.join("artifacts", "digits_dense")

# (label in the size table, its tfprune.export.tflite options)
TFLITE_MODES = (("float32", {}), ("int8-weights", {"quantize": "dynamic"}))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few epochs, for tests")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="max epochs of the dense baseline (default 60; quick 4)",
    )
    parser.add_argument(
        "--prune-epochs",
        type=int,
        default=None,
        help="epochs of pruning + fine-tuning of each pruned model (default 30; quick 4)",
    )
    parser.add_argument(
        "--sparsity", type=float, default=0.9, help="sparsity of the unstructured model"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 4 if args.quick else 60
    if args.prune_epochs is None:
        args.prune_epochs = 4 if args.quick else 30
    if args.epochs < 1 or args.prune_epochs < 2:
        parser.error("--epochs must be >= 1 and --prune-epochs >= 2")
    if not 0 <= args.sparsity < 1:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    return args


def build_model() -> keras.Model:
    """The dense baseline: two hidden ReLU layers and 10 logits."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu", name="hidden_1"),
            keras.layers.Dense(128, activation="relu", name="hidden_2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_mlp",
    )


def compile_model(model, learning_rate) -> None:
    model.compile(
        keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model, x, y) -> float:
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def nm_violations(kernel, n: int = 2, m: int = 4) -> int:
    """Groups of `m` consecutive weights along the input axis (axis 0 of a
    Dense kernel) holding more than `n` non-zeros."""
    kernel = np.asarray(kernel)
    rows = kernel.shape[0] - kernel.shape[0] % m
    groups = kernel[:rows].reshape(rows // m, m, -1)
    full = int(np.sum(np.count_nonzero(groups, axis=1) > n))
    tail = kernel[rows:]
    return full + (int(np.sum(np.count_nonzero(tail, axis=0) > n)) if len(tail) else 0)


def fine_tune(baseline, schedule, strategy, data, args, learning_rate=5e-4):
    """Prunes a copy of `baseline` and fine-tunes it; returns `(pruned, history)`."""
    pruned = tfprune.prune(baseline, schedule, strategy=strategy)
    steps = args.prune_epochs * math.ceil(len(data.x_train) / args.batch_size)
    compile_model(pruned, keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05))
    history = pruned.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.prune_epochs,
        batch_size=args.batch_size,
        callbacks=[tfprune.PruningCallback(update_every=10)],
        verbose=0,
    ).history
    return pruned, history


def main(argv=None) -> dict:
    """Runs the example; returns the summary also written to `summary.json`."""
    args = parse_args(argv)
    timer = _common.Timer()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    data = datasets.load_digits(seed=args.seed)
    print(data)
    steps_per_epoch = math.ceil(len(data.x_train) / args.batch_size)

    # 1. Dense baseline.
    baseline = build_model()
    compile_model(baseline, 1e-3)
    dense_history = baseline.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=8, restore_best_weights=True
            )
        ],
        verbose=0,
    ).history
    n_dense = len(dense_history["loss"])
    dense_accuracy = accuracy(baseline, data.x_test, data.y_test)
    print(f"dense baseline: {n_dense} epochs, test accuracy {dense_accuracy:.2%}")

    # 2. Two pruned copies, each from the baseline's weights. The sparsity
    # ramps up over the first half of the epochs; the rest is recovery.
    ramp_steps = max(1, args.prune_epochs // 2) * steps_per_epoch
    runs = {
        "unstructured": (
            args.sparsity,
            "dense",  # magnitude, one global ranking across the layers
        ),
        "2:4": (
            0.5,  # N:M cannot go beyond 1 - n/m
            tfprune.strategies.Strategy(
                granularity=tfprune.granularity.NM(2, 4),
                allocation=tfprune.strategies.Uniform(),
            ),
        ),
    }
    models, histories, schedules = {"dense": baseline}, {}, {}
    for label, (target, strategy) in runs.items():
        schedules[label] = tfprune.schedules.PolynomialDecay(0.0, target, 0, ramp_steps)
        pruned, histories[label] = fine_tune(baseline, schedules[label], strategy, data, args)
        models[label] = tfprune.strip(pruned)
        print(
            f"{label}: test accuracy {accuracy(models[label], data.x_test, data.y_test):.2%}"
        )

    # 3. Check, save, export and report.
    kernels_24 = {
        layer.name: layer.kernel.numpy() for layer in models["2:4"].layers
    }
    violations = {name: nm_violations(k) for name, k in kernels_24.items()}
    reports = {label: tfprune.sparsity_report(models[label]) for label in models}
    paths, sizes, tflite = {}, [], {}
    for label, model in models.items():
        tag = label.replace(":", "of")
        paths[label] = os.path.join(args.out, f"digits_{tag}.keras")
        _common.save_plain(model, paths[label])
        sizes.append((label, "keras", *_common.file_sizes(paths[label])))
        for mode, options in TFLITE_MODES:
            path = os.path.join(args.out, f"digits_{tag}_{mode}.tflite")
            result = tfprune.export.tflite(
                model, path, overwrite=True, sample_inputs=data.x_test[:64], **options
            )
            tflite[f"{label} {mode}"] = result.to_dict()
            sizes.append((label, f"tflite {mode}", result.bytes, result.gzip_bytes))

    test = {
        label: {
            "accuracy": accuracy(model, data.x_test, data.y_test),
            "sparsity": reports[label].sparsity,
        }
        for label, model in models.items()
    }
    history = {
        "val_accuracy": dense_history["val_accuracy"]
        + histories["unstructured"]["val_accuracy"]
        + histories["2:4"]["val_accuracy"],
        "sparsity": [0.0] * n_dense
        + [float(s) for s in histories["unstructured"]["sparsity"]]
        + [float(s) for s in histories["2:4"]["sparsity"]],
    }
    phases = [
        ("dense", 1),
        (f"{args.sparsity:.0%} unstructured", n_dense + 1),
        ("2:4", n_dense + args.prune_epochs + 1),
    ]
    plot_path = _common.plot_sparsity_and_metric(
        os.path.join(args.out, "training.png"),
        history["sparsity"],
        history["val_accuracy"],
        "validation accuracy",
        phases,
        "Digits MLP: dense, then two pruned copies of it (each from the dense weights)",
    )

    for label in ("unstructured", "2:4"):
        print(f"\n{label}:\n{reports[label]}")
    print()
    print(
        _common.format_table(
            ["model", "sparsity", "test accuracy", "vs dense"],
            [
                (
                    label,
                    f"{t['sparsity']:.2%}",
                    f"{t['accuracy']:.2%}",
                    f"{(t['accuracy'] - test['dense']['accuracy']) * 100:+.2f} pt",
                )
                for label, t in test.items()
            ],
        )
    )
    print(f"\n2:4 pattern: groups of 4 with more than 2 non-zeros per kernel: {violations}")
    dense_bytes = {f: raw for m, f, raw, _ in sizes if m == "dense"}
    print()
    print(
        _common.format_table(
            ["format", "model", "raw", "gzipped", "raw vs dense", "tensors stored sparse"],
            [
                (
                    f,
                    m,
                    _common.kib(raw),
                    _common.kib(gz),
                    f"{raw / dense_bytes[f]:.0%}",
                    len(tflite[f"{m} {f[7:]}"]["sparse_tensors"]) if f != "keras" else "-",
                )
                for m, f, raw, gz in sorted(sizes, key=lambda r: r[1])
            ],
            right=[2, 3, 4, 5],
        )
    )

    summary = {
        "quick": args.quick,
        "target_sparsity": {"unstructured": args.sparsity, "2:4": 0.5},
        "epochs": {"dense": n_dense, "pruned": args.prune_epochs},
        "test": test,
        "nm_violations": violations,
        "sparsity_reports": {label: r.to_dict() for label, r in reports.items()},
        "schedules": {label: s.get_config() for label, s in schedules.items()},
        "tflite": tflite,
        "sizes": [
            {"model": m, "format": f, "bytes": raw, "gzipped_bytes": gz} for m, f, raw, gz in sizes
        ],
        "history": {**history, "phases": phases},
        "files": {**{f"{k}_model": v for k, v in paths.items()}, "plot": plot_path},
    }
    summary["seconds"] = timer.elapsed()
    _common.save_json(os.path.join(args.out, "summary.json"), summary)
    wrote = _common.written(plot_path, "models", "summary.json")
    print(f"\nwrote {args.out}/ ({wrote}) in {summary['seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
