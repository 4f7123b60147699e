"""California house prices: a dense MLP, then a sparse one within a tolerance.

End to end on real data (20,640 census block groups, 1990):

1. Load and preprocess the data (`examples/datasets.py`, `load_housing`).
   The choices, all fitted on the training split only:
   - a seeded random split, 70% train / 15% validation / 15% test;
   - the 207 missing `total_bedrooms` filled with the training median;
   - engineered ratios: rooms per household, bedrooms per room, population
     per household;
   - `log1p` of the heavy-tailed counts and ratios, then every numeric
     feature standardized with the training mean and std;
   - `ocean_proximity` one-hot encoded (5 categories, left as 0/1);
   - the target is the standardized *log* of the price, so that MSE weighs
     a 10% error alike on cheap and dear houses; predictions are converted
     back to dollars for every reported error. Prices capped at $500,001
     in the source are kept as they are.
2. Train a dense baseline MLP (16 -> 128 -> 64 -> 1) with early stopping.
3. Prune a copy of it with the regression strategy
   (`strategy="regression"`: the input layer and the output head stay
   dense, the hidden layer between them is pruned), a linear
   `PolynomialDecay` ramp towards `--sparsity`, and `tfprune.QualityGuard`
   watching the validation MAE in dollars: the first epoch that is more
   than `--tolerance` worse than the dense model's, the guard restores the
   last epoch within tolerance and freezes the sparsity there
   (`guard.best_sparsity`); training goes on at that sparsity to recover.
4. `tfprune.strip`, then report test MAE and RMSE in dollars (dense vs
   pruned), the sparsity report, and the sizes of the `.keras` files, the
   SavedModel and the TFLite files (float32 and int8 weights, sparse
   storage) from `tfprune.export`; write the models, `summary.json` and
   `training.png` to `--out`. A `.keras` file stores weights dense, so
   pruning shows in its gzipped size; sparse TFLite shrinks the file itself.

`--quick` trains on the first 3,000 training rows for 3 + 4 epochs.

Run from the repository root:

```
python examples/house_prices.py              # about 35 s on 2 CPU cores (`make demo`)
python examples/house_prices.py --quick      # a few seconds, used by the tests
python examples/house_prices.py --tolerance 0.05 --out /tmp/house
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
        help="epochs of pruning + fine-tuning (default 40; quick 4)",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        default=0.95,
        help="sparsity the schedule ramps to, if the guard lets it (default 0.95)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.03,
        help="QualityGuard's max_degradation: tolerated relative increase of the "
        "validation MAE over the dense model's (default 0.03)",
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
        args.prune_epochs = 4 if args.quick else 40
    if args.epochs < 1 or args.prune_epochs < 2:
        parser.error("--epochs must be >= 1 and --prune-epochs >= 2")
    if not 0 <= args.sparsity < 1:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if not args.tolerance >= 0:
        parser.error(f"--tolerance must be >= 0, got {args.tolerance}")
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
    """Adds `val_mae_usd` (validation MAE in dollars) to the epoch logs.

    List it before `QualityGuard` in `callbacks`, so that the guard finds
    the metric in the logs."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_mae_usd"] = dollar_errors(
                self.model, self.data.x_val, self.data.y_val, self.data
            )["mae"]


# (label in the size table, exporter in tfprune.export, its options, file suffix)
EXPORTS = (
    ("saved_model", "saved_model", {}, "_saved_model"),
    ("tflite", "tflite", {}, ".tflite"),
    ("tflite int8-weights", "tflite", {"quantize": "dynamic"}, "_int8.tflite"),
)


def export_sizes(models, out, sample_inputs) -> list:
    """Exports each model with `tfprune.export` (every artifact verified
    against the Keras model); returns `(model, format, bytes, gzipped)` rows."""
    rows = []
    for label, model in models:
        for fmt, name, options, suffix in EXPORTS:
            path = os.path.join(out, f"house_prices_{label}{suffix}")
            result = getattr(tfprune.export, name)(
                model, path, overwrite=True, sample_inputs=sample_inputs, **options
            )
            rows.append((label, fmt, result.bytes, result.gzip_bytes))
    return rows


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
    dense_val_mae = dollar_errors(baseline, data.x_val, data.y_val, data)["mae"]
    n_dense = len(dense_history["loss"])
    print(
        f"dense baseline: {n_dense} epochs, validation MAE ${dense_val_mae:,.0f}, "
        f"test MAE ${dense_errors['mae']:,.0f}"
    )

    # 2. Prune a copy of the baseline (its weights included) and fine-tune.
    # The regression strategy leaves the input layer and the output head
    # dense. The sparsity rises linearly over the first 3/4 of the epochs;
    # the guard stops it at the first epoch whose validation MAE is more
    # than `tolerance` worse than the dense model's.
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    ramp_epochs = max(1, min(args.prune_epochs - 1, round(args.prune_epochs * 0.75)))
    schedule = tfprune.schedules.PolynomialDecay(
        0.0, args.sparsity, 0, ramp_epochs * steps_per_epoch, power=1.0
    )
    pruned = tfprune.prune(baseline, schedule, strategy="regression")
    learning_rate = keras.optimizers.schedules.CosineDecay(
        2e-4, args.prune_epochs * steps_per_epoch, alpha=0.05
    )
    pruned.compile(keras.optimizers.Adam(learning_rate), loss="mse")
    guard = tfprune.QualityGuard(
        monitor="val_mae_usd",
        max_degradation=args.tolerance,
        baseline=dense_val_mae,
        verbose=0,  # its result is printed below
    )
    prune_history = pruned.fit(
        x_train,
        y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.prune_epochs,
        batch_size=args.batch_size,
        callbacks=[
            tfprune.PruningCallback(update_every=max(1, steps_per_epoch // 4)),
            DollarValidation(data),  # before the guard: it adds the guard's metric
            guard,
        ],
        verbose=0,
    ).history
    stripped = tfprune.strip(pruned)
    pruned_errors = dollar_errors(stripped, data.x_test, data.y_test, data)
    pruned_val_mae = dollar_errors(stripped, data.x_val, data.y_val, data)["mae"]

    # 3. Save, measure and report.
    model_path = _common.save_plain(
        stripped, os.path.join(args.out, "house_prices_pruned.keras")
    )
    dense_path = _common.save_plain(
        baseline, os.path.join(args.out, "house_prices_dense.keras")
    )
    report = tfprune.sparsity_report(model_path)  # what ships: the saved file
    pruned_layers = sorted(
        layer.layer.name for layer in pruned.layers if isinstance(layer, tfprune.PruningWrapper)
    )
    in_pruned = [r for r in report.rows if r["layer"] in pruned_layers]
    pruned_sparsity = sum(r["zeros"] for r in in_pruned) / sum(r["parameters"] for r in in_pruned)
    sizes = [
        ("dense", "keras", *_common.file_sizes(dense_path)),
        ("pruned", "keras", *_common.file_sizes(model_path)),
    ]
    if not args.no_export:
        sizes += export_sizes(
            [("dense", baseline), ("pruned", stripped)], args.out, data.x_test[:64]
        )

    val_mae = dense_history["val_mae_usd"] + prune_history["val_mae_usd"]
    sparsity = [0.0] * n_dense + [float(s) for s in prune_history["sparsity"]]
    plot_path = _common.plot_sparsity_and_metric(
        os.path.join(args.out, "training.png"),
        sparsity,
        val_mae,
        "validation MAE (USD)",
        [("dense", 1), ("pruning", n_dense + 1)]
        + ([("frozen", n_dense + guard.stopped_epoch + 2)] if guard.stopped else []),
        f"California housing: pruning towards {args.sparsity:.0%} within "
        f"{args.tolerance:.0%} of the dense validation MAE",
    )

    print()
    print(report)
    best = "n/a" if guard.best_sparsity is None else f"{guard.best_sparsity:.2%}"
    print(
        f"\nQualityGuard: highest sparsity of the pruned layers ({', '.join(pruned_layers)}) "
        f"within {args.tolerance:.0%} of the dense validation MAE (${dense_val_mae:,.0f}): "
        + best
        + (
            f" (pruning frozen at epoch {guard.stopped_epoch + 1} of {args.prune_epochs})"
            if guard.stopped
            else f" (never exceeded: the schedule reached {args.sparsity:.0%})"
        )
    )
    print()
    print(
        _common.format_table(
            ["model", "epochs", "val MAE", "test MAE", "test RMSE", "pruned layers", "all layers"],
            [
                (
                    "dense",
                    n_dense,
                    f"${dense_val_mae:,.0f}",
                    f"${dense_errors['mae']:,.0f}",
                    f"${dense_errors['rmse']:,.0f}",
                    "0.00%",
                    "0.00%",
                ),
                (
                    "pruned",
                    len(prune_history["loss"]),
                    f"${pruned_val_mae:,.0f}",
                    f"${pruned_errors['mae']:,.0f}",
                    f"${pruned_errors['rmse']:,.0f}",
                    f"{pruned_sparsity:.2%}",
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
    # The trivial baseline a model must beat: every house priced at the
    # training set's median price.
    median_price = float(np.median(datasets.to_dollars(data.y_train, data)))
    median_err = datasets.to_dollars(data.y_test, data) - median_price
    summary = {
        "quick": args.quick,
        "median_predictor": {"price": median_price,
                             "mae": float(np.mean(np.abs(median_err))),
                             "rmse": float(np.sqrt(np.mean(median_err**2)))},
        "target_sparsity": args.sparsity,
        "tolerance": args.tolerance,
        "train_rows": len(x_train),
        "strategy": "regression",
        "pruned_layers": pruned_layers,
        "dense": {**dense_errors, "val_mae": dense_val_mae, "epochs": n_dense},
        "pruned": {
            **pruned_errors,
            "val_mae": pruned_val_mae,
            "epochs": len(prune_history["loss"]),
            "schedule": schedule.get_config(),
        },
        "guard": {
            "monitor": guard.monitor,
            "baseline": guard.baseline,
            "max_degradation": guard.max_degradation,
            "best_sparsity": guard.best_sparsity,
            "best_value": guard.best_value,
            "stopped": guard.stopped,
            "stopped_epoch": None if guard.stopped_epoch is None else guard.stopped_epoch + 1,
        },
        "sparsity": pruned_sparsity,
        "overall_sparsity": report.sparsity,
        "sparsity_report": report.to_dict(),
        "sizes": [
            {"model": m, "format": f, "bytes": raw, "gzipped_bytes": gz} for m, f, raw, gz in sizes
        ],
        "history": {
            "val_mae_usd": val_mae,
            "sparsity": sparsity,
            "pruning_starts_at_epoch": n_dense + 1,
        },
        "files": {"model": model_path, "dense_model": dense_path, "plot": plot_path},
    }
    summary["seconds"] = timer.elapsed()
    _common.save_json(os.path.join(args.out, "summary.json"), summary)
    wrote = _common.written(plot_path, "models", "summary.json")
    print(f"\nwrote {args.out}/ ({wrote}) in {summary['seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
