"""Beijing PM2.5: an LSTM forecaster pruned by whole hidden units, then shrunk.

End to end on real data (hourly readings at the US Embassy, 2010-2014):

1. Load the data (`examples/datasets.py`, `load_pm25`): 24-hour windows of
   15 features (PM2.5 and weather, standardized on 2010-2012; wind
   direction one-hot; hour and month as sine/cosine) -> the PM2.5 of the
   next hour. Train on 2010-2012, validate on 2013, test on 2014.
2. Train a dense baseline, `LSTM(64) -> Dense(1)`, with early stopping.
3. Prune a copy with the recurrent strategy and whole-unit granularity
   (`tfprune.strategies.recurrent(units=True, protect_outputs=True)`): a
   hidden unit goes with its columns in all four gate blocks of the kernel
   and of the recurrent kernel, its recurrent row and its biases, so its
   state stays exactly zero. The output head stays dense.
4. `tfprune.strip`, then `tfprune.shrink`: the dead units are removed
   physically (fewer hidden units, fewer parameters), with the same outputs.
5. Export the dense and the shrunk model to TFLite with builtin ops only
   (the exporter unrolls the LSTM over the 24 steps and verifies each file
   in LiteRT), and time one-sample inference in LiteRT on one thread.

It reports test RMSE in µg/m³ (dense, pruned, shrunk, and the persistence
forecast "next hour = this hour" for scale), units and parameters before
and after, file sizes and latencies, and writes the models, `summary.json`
and `training.png` to `--out`.

`--quick` uses 2,000 windows per split and 2 + 3 epochs.

Run from the repository root:

```
python examples/air_quality_lstm.py              # about 90 s on 2 CPU cores
python examples/air_quality_lstm.py --quick      # under a minute, used by the tests
python examples/air_quality_lstm.py --sparsity 0.5 --out /tmp/pm25
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
else:  # run as a script: python examples/air_quality_lstm.py
    import _common
    import datasets

DEFAULT_OUT = os.path.join("artifacts", "air_quality_lstm")
WINDOW = 24


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subset, few epochs, for tests")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="max epochs of the dense baseline (default 40; quick 2)",
    )
    parser.add_argument(
        "--prune-epochs",
        type=int,
        default=None,
        help="epochs of pruning + fine-tuning (default 24; quick 3)",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        default=0.75,
        help="fraction of the hidden units to remove (default 0.75)",
    )
    parser.add_argument("--units", type=int, default=64, help="hidden units of the LSTM")
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=None,
        help="LiteRT invocations timed per model (default 2000; quick 200)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 40
    if args.prune_epochs is None:
        args.prune_epochs = 3 if args.quick else 24
    if args.latency_runs is None:
        args.latency_runs = 200 if args.quick else 2000
    if args.epochs < 1 or args.prune_epochs < 2 or args.latency_runs < 1:
        parser.error("--epochs and --latency-runs must be >= 1 and --prune-epochs >= 2")
    if not 0 <= args.sparsity < 1:
        parser.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.units < 2:
        parser.error(f"--units must be >= 2, got {args.units}")
    return args


def build_model(num_features: int, units: int) -> keras.Model:
    """The dense baseline: one LSTM layer and a linear output."""
    return keras.Sequential(
        [
            keras.Input((WINDOW, num_features)),
            keras.layers.LSTM(units, name="lstm"),
            keras.layers.Dense(1, name="pm25"),
        ],
        name="pm25_lstm",
    )


def predict(model, x) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def errors(prediction, y, data) -> dict:
    """RMSE and MAE in µg/m³ of standardized `prediction` against `y`."""
    err = data.to_target_units(prediction) - data.to_target_units(y)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def alive_units(model) -> tuple:
    """`(alive, total)` hidden units of the pruned LSTM, read from its masks:
    a unit is alive while any of its kernel columns, in any gate, is kept."""
    wrappers = [layer for layer in model.layers if isinstance(layer, tfprune.PruningWrapper)]
    for wrapper in wrappers:
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            if weight.gates > 1 and weight.variable.name == "kernel":
                m = keras.ops.convert_to_numpy(mask)
                m = m.reshape(m.shape[0], weight.gates, -1)
                return int(np.count_nonzero(m.any(axis=(0, 1)))), m.shape[-1]
    raise ValueError("the model holds no pruned recurrent kernel")


class Monitor(keras.callbacks.Callback):
    """Adds `val_rmse_ugm3` (validation RMSE in µg/m³) and, for a pruned
    model, `unit_sparsity` (fraction of hidden units removed) to the logs."""

    def __init__(self, data, pruned: bool):
        super().__init__()
        self.data, self.pruned = data, pruned

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        prediction = predict(self.model, self.data.x_val)
        logs["val_rmse_ugm3"] = errors(prediction, self.data.y_val, self.data)["rmse"]
        if self.pruned:
            alive, total = alive_units(self.model)
            logs["unit_sparsity"] = 1 - alive / total


def export_tflite(models, out, sample_inputs) -> dict:
    """Builtin-only float32 TFLite files, verified in LiteRT by the exporter."""
    results = {}
    for label, model in models:
        path = os.path.join(out, f"pm25_{label}.tflite")
        results[label] = tfprune.export.tflite(
            model, path, overwrite=True, sample_inputs=sample_inputs
        )
    return results


def main(argv=None) -> dict:
    """Runs the example; returns the summary also written to `summary.json`."""
    args = parse_args(argv)
    timer = _common.Timer()
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    data = datasets.load_pm25(
        window=WINDOW, horizon=1, seed=args.seed, max_samples=2000 if args.quick else None
    )
    print(data)
    num_features = data.x_train.shape[-1]
    steps_per_epoch = math.ceil(len(data.x_train) / args.batch_size)

    # 1. Dense baseline.
    baseline = build_model(num_features, args.units)
    baseline.compile(keras.optimizers.Adam(2e-3), loss="mse")
    dense_history = baseline.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[
            Monitor(data, pruned=False),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=3, min_lr=1e-5
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=6, restore_best_weights=True
            ),
        ],
        verbose=0,
    ).history
    n_dense = len(dense_history["loss"])
    print(f"dense baseline: {n_dense} epochs")

    # 2. Prune whole hidden units of a copy of the baseline, and fine-tune.
    # `recurrent(units=True)` allocates uniformly: the LSTM loses exactly
    # round(units * sparsity) hidden units; the output head stays dense.
    strategy = tfprune.strategies.recurrent(units=True, protect_outputs=True)
    ramp_epochs = max(1, min(args.prune_epochs - 1, round(args.prune_epochs * 0.5)))
    schedule = tfprune.schedules.PolynomialDecay(
        0.0, args.sparsity, 0, ramp_epochs * steps_per_epoch
    )
    pruned = tfprune.prune(baseline, schedule, strategy=strategy)
    pruned.compile(
        keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                1e-3, args.prune_epochs * steps_per_epoch, alpha=0.05
            )
        ),
        loss="mse",
    )
    prune_history = pruned.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=args.prune_epochs,
        batch_size=args.batch_size,
        callbacks=[
            tfprune.PruningCallback(update_every=max(1, steps_per_epoch // 4)),
            Monitor(data, pruned=True),
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=5,
                restore_best_weights=True,
                start_from_epoch=ramp_epochs,
            ),
        ],
        verbose=0,
    ).history

    # 3. Bake the masks in, then remove the dead units.
    stripped = tfprune.strip(pruned)
    shrunk, shrink_report = tfprune.shrink(stripped, return_report=True)
    print(f"\n{shrink_report}")
    out_dense = predict(baseline, data.x_test)
    out_pruned = predict(pruned, data.x_test)
    out_stripped = predict(stripped, data.x_test)
    out_shrunk = predict(shrunk, data.x_test)
    shrunk_vs_pruned = float(np.max(np.abs(out_shrunk - out_stripped)))
    stripped_vs_pruned = float(np.max(np.abs(out_stripped - out_pruned)))
    lstm_row = shrink_report["lstm"]
    weight_report = tfprune.sparsity_report(stripped)

    test_errors = {
        "persistence": errors(data.x_test[:, -1, :1], data.y_test, data),
        # The training mean for every hour (0 in standardized units).
        "mean": errors(np.zeros_like(data.y_test), data.y_test, data),
        "dense": errors(out_dense, data.y_test, data),
        "pruned": errors(out_stripped, data.y_test, data),
        "shrunk": errors(out_shrunk, data.y_test, data),
    }

    # 4. Save, export (builtin-only TFLite, verified in LiteRT) and time.
    paths = {
        "dense": os.path.join(args.out, "pm25_dense.keras"),
        "pruned": os.path.join(args.out, "pm25_pruned.keras"),
        "shrunk": os.path.join(args.out, "pm25_shrunk.keras"),
    }
    for label, model in (("dense", baseline), ("pruned", stripped), ("shrunk", shrunk)):
        plain = keras.models.clone_model(model)  # without optimizer state, for fair sizes
        plain.set_weights(model.get_weights())
        plain.save(paths[label])
    exports = export_tflite(
        [("dense", baseline), ("pruned", stripped), ("shrunk", shrunk)],
        args.out,
        data.x_test[:64],
    )
    sample = data.x_test[:1]
    latency = {
        label: _common.litert_latency(r.path, r.resolver, sample, runs=args.latency_runs)
        for label, r in exports.items()
    }

    history = {
        "val_rmse_ugm3": dense_history["val_rmse_ugm3"] + prune_history["val_rmse_ugm3"],
        "unit_sparsity": [0.0] * n_dense + prune_history["unit_sparsity"],
        "weight_sparsity": [0.0] * n_dense + [float(s) for s in prune_history["sparsity"]],
        "pruning_starts_at_epoch": n_dense + 1,
    }
    plot_path = _common.plot_sparsity_and_metric(
        os.path.join(args.out, "training.png"),
        history["unit_sparsity"],
        history["val_rmse_ugm3"],
        "validation RMSE (µg/m³)",
        [("dense", 1), ("pruning units", n_dense + 1)],
        f"Beijing PM2.5, LSTM({args.units}): removing {args.sparsity:.0%} of the hidden units",
        sparsity_label="fraction of hidden units removed",
    )

    params = {
        "dense": baseline.count_params(),
        "pruned_nonzero": int(
            sum(np.count_nonzero(w) for w in stripped.get_weights())
        ),
        "shrunk": shrunk.count_params(),
    }
    print()
    print(weight_report)
    print()
    print(
        _common.format_table(
            ["model", "hidden units", "parameters", "test RMSE", "test MAE", "LiteRT latency"],
            [
                (
                    "persistence (last hour)",
                    "-",
                    "-",
                    *_fmt_errors(test_errors["persistence"]),
                    "-",
                ),
                (
                    "dense",
                    lstm_row["units_before"],
                    f"{params['dense']:,}",
                    *_fmt_errors(test_errors["dense"]),
                    f"{latency['dense']:.1f} µs",
                ),
                (
                    "pruned (stripped)",
                    f"{lstm_row['units_after']} alive",
                    f"{params['pruned_nonzero']:,} non-zero",
                    *_fmt_errors(test_errors["pruned"]),
                    f"{latency['pruned']:.1f} µs",
                ),
                (
                    "shrunk",
                    lstm_row["units_after"],
                    f"{params['shrunk']:,}",
                    *_fmt_errors(test_errors["shrunk"]),
                    f"{latency['shrunk']:.1f} µs",
                ),
            ],
        )
    )
    print(
        f"\nshrunk vs pruned outputs: max abs difference {shrunk_vs_pruned:.2e}; "
        f"LiteRT speed-up of the shrunk model: {latency['dense'] / latency['shrunk']:.2f}x"
    )
    sizes = []
    for label in ("dense", "pruned", "shrunk"):
        sizes.append((label, "keras", *_common.file_sizes(paths[label])))
        sizes.append((label, "tflite", exports[label].bytes, exports[label].gzip_bytes))
    print()
    print(
        _common.format_table(
            ["format", "model", "raw", "gzipped", "tensors stored sparse"],
            [
                (
                    f,
                    m,
                    _common.kib(raw),
                    _common.kib(gz),
                    len(exports[m].sparse_tensors) if f == "tflite" else "-",
                )
                for m, f, raw, gz in sorted(sizes, key=lambda r: (r[1], r[0]))
            ],
            right=[2, 3, 4],
        )
    )

    summary = {
        "quick": args.quick,
        "target_sparsity": args.sparsity,
        "window": WINDOW,
        "samples": {s: len(data.split(s)[0]) for s in ("train", "val", "test")},
        "strategy": repr(strategy),
        "units": {"before": lstm_row["units_before"], "after": lstm_row["units_after"]},
        "unit_sparsity": 1 - lstm_row["units_after"] / lstm_row["units_before"],
        "params": {**params, "shrink_report": shrink_report.to_dict()},
        "weight_sparsity": weight_report.sparsity,
        "sparsity_report": weight_report.to_dict(),
        "test": test_errors,
        "max_abs_diff": {
            "stripped_vs_pruned": stripped_vs_pruned,
            "shrunk_vs_pruned": shrunk_vs_pruned,
        },
        "epochs": {"dense": n_dense, "pruned": len(prune_history["loss"])},
        "schedule": schedule.get_config(),
        "tflite": {label: r.to_dict() for label, r in exports.items()},
        "latency_us": latency,
        "latency_runs": args.latency_runs,
        "sizes": [
            {"model": m, "format": f, "bytes": raw, "gzipped_bytes": gz} for m, f, raw, gz in sizes
        ],
        "history": history,
        "files": {**{f"{k}_model": v for k, v in paths.items()}, "plot": plot_path},
    }
    summary["seconds"] = timer.elapsed()
    _common.save_json(os.path.join(args.out, "summary.json"), summary)
    wrote = _common.written(plot_path, "models", "summary.json")
    print(f"\nwrote {args.out}/ ({wrote}) in {summary['seconds']:.0f} s")
    return summary


def _fmt_errors(e) -> tuple:
    return f"{e['rmse']:.2f} µg/m³", f"{e['mae']:.2f} µg/m³"


if __name__ == "__main__":
    main()
