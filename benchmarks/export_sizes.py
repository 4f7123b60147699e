"""Sizes and LiteRT latency of exported pruned models.

For a dense regression MLP (8 -> 256 -> 256 -> 1) and an LSTM model, each
at 0/50/80/90% sparsity (one-shot magnitude pruning after a short fit on
synthetic data), exports a SavedModel and TFLite files in every mode with
`tfprune.export`, and prints markdown tables of:

- file sizes, raw and gzipped (SavedModel: tar + gzip of the directory);
- size ratios against the dense float32 TFLite file, with the targets
  (float sparse at 90% <= 0.20x, sparse + dynamic int8 at 90% <= 0.10x);
- LiteRT latency (median of many single-sample invocations, one thread)
  of the dense, sparse and shrunk float32 files;
- whole-unit pruning: the MLP with half the units of each hidden layer
  pruned (`Units` granularity, `Uniform` allocation, output layer
  protected), stripped and shrunk to 8 -> 128 -> 128 -> 1, against the
  dense MLP, both as float32 TFLite files, with the target (LiteRT latency
  <= 0.6x of the dense model's).

Usage:

    python benchmarks/export_sizes.py [--out results.md] [--runs 500] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune import export  # noqa: E402
from tfprune import granularity  # noqa: E402
from tfprune import strategies  # noqa: E402
from tfprune._training.wrapper import find_wrappers  # noqa: E402

SPARSITIES = (0.0, 0.5, 0.8, 0.9)
UNITS_SPARSITY = 0.5  # fraction of each hidden layer's units removed
UNITS_TARGET = 0.6  # shrunk latency / dense latency
# (label, quantize, sparse)
MODES = (
    ("float32", None, False),
    ("float32 sparse", None, True),
    ("dynamic", "dynamic", False),
    ("dynamic sparse", "dynamic", True),
    ("float16 sparse", "float16", True),
    ("int8 sparse", "int8", True),
)


def _mlp():
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="mlp",
    )


def _lstm():
    return keras.Sequential(
        [keras.Input((16, 8)), keras.layers.LSTM(64), keras.layers.Dense(1)], name="lstm"
    )


def _data(model, n, rng):
    x = rng.standard_normal((n,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    y = np.tanh(x.reshape(n, -1)[:, :4].sum(axis=1, keepdims=True))
    return x, y


def _trained(build, epochs, rng):
    model = build()
    x, y = _data(model, 2048, rng)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model, x


def _pruned(model, sparsity):
    pruned = tfprune.prune(model, sparsity)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(sparsity)
    return pruned


def _latency(result, x, runs: int) -> float:
    """Median microseconds of one invocation on one sample."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(
        model_path=result.path,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType[result.resolver],
    )
    runner = interpreter.get_signature_runner()
    sample = np.ascontiguousarray(x[:1])
    for _ in range(20):
        runner(input_0=sample)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(input_0=sample)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _invoke_latency(result, x, runs: int) -> float:
    """Median microseconds of `interpreter.invoke()` alone on one sample set
    once: `_latency` without the signature runner's per-call Python work
    (about 1.5 us here), which weighs on models this small."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(
        model_path=result.path,
        num_threads=1,
        experimental_op_resolver_type=OpResolverType[result.resolver],
    )
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                           np.ascontiguousarray(x[:1]))
    for _ in range(20):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def measure(name, model, x, folder, runs, sparsities):
    rows = []
    for sparsity in sparsities:
        pruned = _pruned(model, sparsity) if sparsity else model
        tag = f"{name}_{int(sparsity * 100)}"
        row = {"model": name, "sparsity": sparsity, "sizes": {}, "latency": {}}
        saved = export.saved_model(pruned, os.path.join(folder, f"{tag}_sm"))
        row["sizes"]["SavedModel"] = (saved.bytes, saved.gzip_bytes)
        results = {}
        for label, quantize, sparse in MODES:
            results[label] = export.tflite(
                pruned,
                os.path.join(folder, f"{tag}_{label.replace(' ', '_')}.tflite"),
                quantize=quantize,
                sparse=sparse,
                representative_data=x[:256] if quantize == "int8" else None,
            )
            row["sizes"][label] = (results[label].bytes, results[label].gzip_bytes)
        row["latency"]["dense"] = _latency(results["float32"], x, runs)
        row["latency"]["sparse"] = _latency(results["float32 sparse"], x, runs)
        try:
            shrunk = export.tflite(pruned, os.path.join(folder, f"{tag}_shrunk.tflite"), shrink=True)
        except ValueError as e:  # shrink unavailable or not applicable
            row["latency"]["shrunk"] = None
            row["shrink_note"] = str(e).splitlines()[0]
        else:
            row["latency"]["shrunk"] = _latency(shrunk, x, runs)
            row["sizes"]["float32 sparse shrunk"] = (shrunk.bytes, shrunk.gzip_bytes)
        rows.append(row)
        print(f"measured {tag}", file=sys.stderr, flush=True)
    return rows


def _widths(model) -> list:
    """Input width, then the units of every Dense layer."""
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return [int(model.inputs[0].shape[-1])] + dense


def measure_units(model, x, folder, runs) -> dict:
    """LiteRT latency of `model` shrunk to half its hidden units vs dense.

    Whole units are pruned one-shot (`Units` granularity, L2 norm, `Uniform`
    allocation: every hidden layer loses `UNITS_SPARSITY` of its units; the
    output layer is protected), the masks are baked in (`tfprune.strip`)
    and the dead units removed (`tfprune.shrink`). Both models are exported
    as float32 TFLite (no sparse format) and timed with `_latency`; each is
    timed three times, alternating, and the median of the three medians is
    kept.
    """
    strategy = strategies.Strategy(
        "l2_norm", granularity.Units(), strategies.Uniform(), protect_outputs=True
    )
    pruned = tfprune.prune(model, UNITS_SPARSITY, strategy=strategy)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(UNITS_SPARSITY)
    shrunk = tfprune.shrink(tfprune.strip(pruned))
    files = {
        "dense": export.tflite(model, os.path.join(folder, "units_dense.tflite"), sparse=False),
        "shrunk": export.tflite(shrunk, os.path.join(folder, "units_shrunk.tflite"),
                                sparse=False),
    }
    out = {
        "widths": {"dense": _widths(model), "shrunk": _widths(shrunk)},
        "bytes": {name: result.bytes for name, result in files.items()},
    }
    for key, timer in (("latency", _latency), ("invoke", _invoke_latency)):
        times = {name: [] for name in files}
        for _ in range(3):
            for name, result in files.items():
                times[name].append(timer(result, x, runs))
        out[key] = {name: statistics.median(t) for name, t in times.items()}
    out["ratio"] = out["latency"]["shrunk"] / out["latency"]["dense"]
    out["invoke_ratio"] = out["invoke"]["shrunk"] / out["invoke"]["dense"]
    return out


def _units_markdown(units) -> list:
    arrows = {k: " -> ".join(str(w) for w in v) for k, v in units["widths"].items()}
    lines = [
        "",
        f"### Whole-unit pruning, {UNITS_SPARSITY:.0%} of each hidden layer, then shrink (mlp)",
        "",
        "Float32 TFLite; LiteRT median microseconds per single-sample invocation, 1 thread: "
        "`LiteRT us` as in the table above (signature runner), `invoke us` the interpreter's "
        "`invoke()` alone, without the runner's per-call Python work.",
        "",
        "| model | layers | TFLite KiB | LiteRT us | vs dense | invoke us | vs dense |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("dense", "shrunk"):
        lat, inv = units["latency"], units["invoke"]
        lines.append(f"| {name} | {arrows[name]} | {_kib(units['bytes'][name])} | "
                     f"{lat[name]:.2f} | {lat[name] / lat['dense']:.3f}x | "
                     f"{inv[name]:.2f} | {inv[name] / inv['dense']:.3f}x |")
    met = "met" if units["ratio"] <= UNITS_TARGET else "MISSED"
    lines += ["", f"- shrunk to half its hidden units: {units['ratio']:.3f}x of the dense "
              f"latency (target <= {UNITS_TARGET}x: {met}); `invoke()` alone: "
              f"{units['invoke_ratio']:.3f}x"]
    return lines


def markdown(rows, units=None) -> str:
    labels = ["SavedModel"] + [m[0] for m in MODES]
    lines = [
        "### File sizes (KiB, raw / gzip -9; SavedModel: tar + gzip of the directory)",
        "",
        "| model | sparsity | " + " | ".join(labels) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in labels) + " |",
    ]
    for row in rows:
        cells = [f"{_kib(r)} / {_kib(g)}" for r, g in (row["sizes"][label] for label in labels)]
        lines.append(f"| {row['model']} | {row['sparsity']:.0%} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### TFLite size relative to the dense float32 file (raw bytes)",
        "",
        "| model | sparsity | float32 sparse | dynamic | dynamic sparse | float16 sparse | int8 sparse |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        base = row["sizes"]["float32"][0]
        ratios = [row["sizes"][label][0] / base for label, _, _ in MODES[1:]]
        lines.append(
            f"| {row['model']} | {row['sparsity']:.0%} | " + " | ".join(f"{r:.3f}x" for r in ratios) + " |"
        )
    lines += [
        "",
        "### LiteRT latency (median microseconds per single-sample invocation, 1 thread)",
        "",
        "| model | sparsity | dense float32 | sparse float32 | shrunk (sparse float32) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lat = row["latency"]
        shrunk = "n/a" if lat["shrunk"] is None else f"{lat['shrunk']:.1f}"
        lines.append(
            f"| {row['model']} | {row['sparsity']:.0%} | {lat['dense']:.1f} | {lat['sparse']:.1f} | {shrunk} |"
        )
    checks = []
    for row in rows:
        if row["model"] == "mlp" and row["sparsity"] == 0.9:
            base = row["sizes"]["float32"][0]
            sparse = row["sizes"]["float32 sparse"][0] / base
            dynamic = row["sizes"]["dynamic sparse"][0] / base
            checks.append(f"- float32 sparse at 90%: {sparse:.3f}x of dense float32 "
                          f"(target <= 0.20x: {'met' if sparse <= 0.20 else 'MISSED'})")
            checks.append(f"- sparse + dynamic int8 at 90%: {dynamic:.3f}x of dense float32 "
                          f"(target <= 0.10x: {'met' if dynamic <= 0.10 else 'MISSED'})")
    if checks:
        lines += ["", "### Targets (mlp)", ""] + checks
    if units is not None:
        lines += _units_markdown(units)
    notes = sorted({row["shrink_note"] for row in rows if "shrink_note" in row})
    if notes:
        lines += ["", "Shrink not measured: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown tables to this file")
    parser.add_argument("--runs", type=int, default=500, help="invocations per latency (default 500)")
    parser.add_argument("--quick", action="store_true", help="0%% and 90%% only, 100 runs, 1 epoch")
    args = parser.parse_args(argv)
    sparsities = (0.0, 0.9) if args.quick else SPARSITIES
    runs = 100 if args.quick else args.runs
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rows, units = [], None
    with tempfile.TemporaryDirectory() as folder:
        for name, build, epochs in (("mlp", _mlp, 3), ("lstm", _lstm, 2)):
            model, x = _trained(build, 1 if args.quick else epochs, rng)
            rows += measure(name, model, x, folder, runs, sparsities)
            if name == "mlp":
                units = measure_units(model, x, folder, runs)
                print("measured mlp whole-unit shrink", file=sys.stderr, flush=True)
    text = markdown(rows, units)
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
