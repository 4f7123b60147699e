"""California house prices: a dense MLP, then a sparse one from its weights.

End to end on real data (20,640 census block groups, 1990):

1. Load and preprocess the data (`examples/datasets.py`: train-only median
   imputation, one-hot ocean proximity, engineered ratios, standardization;
   the model learns the standardized log price).
2. Train a dense baseline MLP (16 -> 128 -> 64 -> 1) with early stopping.
3. Prune a copy of the baseline with `tfprune.prune` and a
   `PolynomialDecay` schedule, fine-tune it with `tfprune.PruningCallback`,
   and `tfprune.strip` it.
4. Report test MAE and RMSE in dollars, the sparsity report and file sizes
   (`.keras`, and SavedModel/TFLite through `tfprune.export` when this
   tfprune has it), and write the stripped model, `summary.json` and
   `training.png` to `--out`. A `.keras` file stores weights dense, so
   pruning shows in its gzipped size; sparse TFLite shrinks the file itself.

`--quick` trains on the first 3,000 training rows for 3 + 3 epochs.

Run from the repository root:

```
python examples/house_prices.py              # about a minute on 2 CPU cores
python examples/house_prices.py --quick      # a few seconds, used by the tests
python examples/house_prices.py --sparsity 0.95 --out /tmp/house
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
else:  # run as a script: python examples/house_prices.py
    import _common
    import datasets

DEFAULT_OUT = os.path.join("artifacts", "house_prices")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny run (subset, few epochs) for tests"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="max epochs of the dense baseline (default 100; quick 3)",
    )
    parser.add_argument(
        "--prune-epochs",
        type=int,
        default=None,
        help="epochs of pruning + fine-tuning (default 60; quick 3)",
    )
    parser.add_argument(
        "--sparsity", type=float, default=0.9, help="final sparsity of the pruned weights"
    )
    parser.add_argument(
        "--no-export", action="store_true", help="skip the SavedModel/TFLite exports"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.quick else 100
    if args.prune_epochs is None:
        args.prune_epochs = 3 if args.quick else 60
    if args.epochs < 1 or args.prune_epochs < 2:
        parser.error("--epochs must be >= 1 and --prune-epochs >= 2")
    if not 0 <= args.sparsity < 1:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    return args


def build_model(num_features: int) -> keras.Model:
    """The dense baseline: two hidden ReLU layers and a linear output."""
    return keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(128, activation="relu", name="hidden_1"),
            keras.layers.Dense(64, activation="relu", name="hidden_2"),
            keras.layers.Dense(1, name="price"),
        ],
        name="house_prices",
    )


def dollar_errors(model, x, y, data) -> dict:
    """MAE and RMSE in dollars of `model` on `(x, y)`."""
    pred = datasets.to_dollars(keras.ops.convert_to_numpy(model(x, training=False)), data)
    true = datasets.to_dollars(y, data)
    err = pred - true
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


class DollarValidation(keras.callbacks.Callback):
    """Adds `val_mae_usd` (validation MAE in dollars) to the epoch logs."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_mae_usd"] = dollar_errors(
                self.model, self.data.x_val, self.data.y_val, self.data
            )["mae"]


def save_plain(model, path) -> str:
    """Saves `model` as `.keras` without optimizer state, for fair sizes."""
    if getattr(model, "optimizer", None) is not None:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        model = copy
    model.save(path)
    return path


# (label in the size table, exporter in tfprune.export, its options, file suffix)
EXPORTS = (
    ("saved_model", "saved_model", {}, "_saved_model"),
    ("tflite", "tflite", {}, ".tflite"),
    ("tflite int8-weights", "tflite", {"quantize": "dynamic"}, "_int8.tflite"),
)


def export_sizes(models, out, sample_inputs) -> tuple:
    """SavedModel and TFLite sizes via `tfprune.export`, when it is there.

    Returns:
        `(rows, errors)`: `(model, format, bytes, gzipped bytes)` per
        artifact, and the messages of the exports that failed.
    """
    try:
        from tfprune import export
    except ImportError:
        export = None
    if export is None or not all(hasattr(export, name) for _, name, _, _ in EXPORTS):
        print("tfprune.export is not available in this tfprune: SavedModel/TFLite sizes skipped.")
        return [], []
    rows, errors = [], []
    for label, model in models:
        for fmt, name, options, suffix in EXPORTS:
            path = os.path.join(out, label + suffix)
            try:
                result = getattr(export, name)(
                    model, path, overwrite=True, sample_inputs=sample_inputs, **options
                )
            except (TypeError, ValueError, export.ExportError) as e:
                errors.append(f"{fmt} export of the {label} model failed: {e}")
                print(errors[-1])
                continue
            rows.append((label, fmt, result.bytes, result.gzip_bytes))
    return rows, errors


def main(argv=None) -> dict:
    """Runs the example; returns the summary also written to `summary.json`."""
    args = parse_args(argv)
    timer = _common.Timer()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    data = datasets.load_housing(seed=args.seed)
    x_train, y_train = data.x_train, data.y_train
    if args.quick:
        x_train, y_train = x_train[:3000], y_train[:3000]
    print(f"{data}\ntraining on {len(x_train):,} rows")

    # 1. Dense baseline.
    baseline = build_model(x_train.shape[1])
    baseline.compile(keras.optimizers.Adam(1e-3), loss="mse")
    dense_history = baseline.fit(
        x_train,
        y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[
            DollarValidation(data),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=4, min_lr=1e-5
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=12, restore_best_weights=True
            ),
        ],
        verbose=0,
    ).history
    dense_errors = dollar_errors(baseline, data.x_test, data.y_test, data)
    print(
        f"dense baseline: {len(dense_history['loss'])} epochs, test MAE ${dense_errors['mae']:,.0f}"
    )

    # 2. Prune a copy of the baseline (its weights included) and fine-tune.
    # The sparsity ramps up over the first epochs; the last ones let the
    # surviving weights recover, with early stopping once the target is reached.
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    ramp_epochs = max(1, min(args.prune_epochs - 1, round(args.prune_epochs * 0.5)))
    schedule = tfprune.schedules.PolynomialDecay(
        0.0, args.sparsity, 0, ramp_epochs * steps_per_epoch
    )
    pruned = tfprune.prune(baseline, schedule)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        1e-3, args.prune_epochs * steps_per_epoch, alpha=0.05
    )
    pruned.compile(keras.optimizers.Adam(learning_rate), loss="mse")
    # TODO(tfprune.QualityGuard): when the regression strategy and
    # `tfprune.QualityGuard` land, add the guard to the callbacks below so it
    # watches `val_mae_usd` and backs the sparsity off if the pruned model
    # regresses beyond a tolerance of the dense baseline's validation MAE.
    prune_history = pruned.fit(
        x_train,
        y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.prune_epochs,
        batch_size=args.batch_size,
        callbacks=[
            tfprune.PruningCallback(update_every=max(1, steps_per_epoch // 4)),
            DollarValidation(data),
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=6,
                restore_best_weights=True,
                start_from_epoch=ramp_epochs,
            ),
        ],
        verbose=0,
    ).history
    stripped = tfprune.strip(pruned)
    pruned_errors = dollar_errors(stripped, data.x_test, data.y_test, data)

    # 3. Save, measure and report.
    model_path = os.path.join(args.out, "house_prices_pruned.keras")
    save_plain(stripped, model_path)
    dense_path = save_plain(baseline, os.path.join(args.out, "house_prices_dense.keras"))
    report = tfprune.sparsity_report(model_path)  # what ships: the saved file
    sizes = [
        ("dense", "keras", *_common.file_sizes(dense_path)),
        ("pruned", "keras", *_common.file_sizes(model_path)),
    ]
    export_errors = []
    if not args.no_export:
        rows, export_errors = export_sizes(
            [("dense", baseline), ("pruned", stripped)], args.out, data.x_test[:64]
        )
        sizes += rows

    n_dense = len(dense_history["loss"])
    val_mae = dense_history["val_mae_usd"] + prune_history["val_mae_usd"]
    sparsity = [0.0] * n_dense + [float(s) for s in prune_history["sparsity"]]
    plot_path = os.path.join(args.out, "training.png")
    _common.plot_sparsity_and_metric(
        plot_path,
        sparsity,
        val_mae,
        "validation MAE (USD)",
        [("dense", 1), ("pruning", n_dense + 1)],
        f"California housing: dense baseline, then pruning to {args.sparsity:.0%}",
    )

    print()
    print(report)
    print()
    print(
        _common.format_table(
            ["model", "epochs", "test MAE", "test RMSE", "sparsity"],
            [
                (
                    "dense",
                    n_dense,
                    f"${dense_errors['mae']:,.0f}",
                    f"${dense_errors['rmse']:,.0f}",
                    "0.00%",
                ),
                (
                    "pruned",
                    len(prune_history["loss"]),
                    f"${pruned_errors['mae']:,.0f}",
                    f"${pruned_errors['rmse']:,.0f}",
                    f"{report.sparsity:.2%}",
                ),
            ],
        )
    )
    gzipped = {(f, m): gz for m, f, _, gz in sizes}
    print()
    print(
        _common.format_table(
            ["format", "model", "raw", "gzipped", "gzipped vs dense"],
            [
                (f, m, _common.kib(raw), _common.kib(gz), f"{gz / gzipped[f, 'dense']:.0%}")
                for f, m, raw, gz in sorted((f, m, raw, gz) for m, f, raw, gz in sizes)
            ],
            right=[2, 3, 4],
        )
    )
    summary = {
        "quick": args.quick,
        "target_sparsity": args.sparsity,
        "train_rows": len(x_train),
        "dense": {**dense_errors, "epochs": n_dense},
        "pruned": {
            **pruned_errors,
            "epochs": len(prune_history["loss"]),
            "schedule": schedule.get_config(),
        },
        "sparsity": report.sparsity,
        "sparsity_report": report.to_dict(),
        "sizes": [
            {"model": m, "format": f, "bytes": raw, "gzipped_bytes": gz} for m, f, raw, gz in sizes
        ],
        "export_errors": export_errors,
        "history": {
            "val_mae_usd": val_mae,
            "sparsity": sparsity,
            "pruning_starts_at_epoch": n_dense + 1,
        },
        "files": {"model": model_path, "dense_model": dense_path, "plot": plot_path},
    }
    summary["seconds"] = timer.elapsed()
    _common.save_json(os.path.join(args.out, "summary.json"), summary)
    print(f"\nwrote {args.out}/ (model, summary.json, training.png) in {summary['seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
