"""Structured pruning on real CNNs: ResNet50, MobileNetV2, EfficientNetB0.

Measures the "Real CNNs" table of docs/shrink.md. Each model comes from
`keras.applications` (`weights=None`, 96x96x3 inputs, 10 classes, logits).
Its BatchNormalization statistics and the biases are set to seeded random
values, as after training: a pruned channel then carries a non-zero
constant, the hard case for `shrink` (freshly initialized, every constant is
zero). The model is pruned to half the channels of every layer with `Units`
(L2 norm, `Uniform`, output layer protected) through `tfprune.prune` and
`PruningCallback` (one mask update, no training), stripped and shrunk.
Before (pruned and stripped: same shapes, zero channels) and after (shrunk):

- parameters (`count_params`);
- multiply-accumulates of one image, counted from the layer shapes of every
  Conv, DepthwiseConv and Dense call (`count_macs`);
- channels: the output units of every Conv and Dense layer (shrink's report);
- LiteRT latency of the float32 TFLite file (`tfprune.export.tflite`, not
  sparse): `interpreter.invoke()` on one image, one thread, median of
  `--runs` runs, before and after measured in turn three times and the
  median of the three medians kept;
- the largest absolute difference between the shrunk and the pruned model's
  logits on a random batch, with the largest logit for scale.

On real data (`--only digits`): a small ResNet-style CNN (two residual
stages of 3x3 convolutions with BatchNormalization, 32 then 64 channels) on
the 8x8 digits of `examples.datasets.load_digits`, trained dense, then
pruned to half its channels with the same strategy while fine-tuning
(`PolynomialDecay` from 0 to 50%), stripped and shrunk: test accuracy,
MACs and LiteRT latency of the dense and the shrunk model, the largest
difference between the shrunk and the pruned model's logits.

Every number goes to `docs/structured.json` (`--only` updates its part of
an existing file); `tools/structured_tables.py` renders the tables of
docs/shrink.md from it. Run from the repository root:

    python -m benchmarks.structured                  # about 15 minutes on 2 cores
    python -m benchmarks.structured --only digits    # the digits CNN alone
    python -m benchmarks.structured --quick --output /tmp/structured.json
    python tools/structured_tables.py                # then rewrite docs/shrink.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from benchmarks._report import machine_info  # noqa: E402
from tfprune import export  # noqa: E402
from tfprune import strategies  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "structured.json")
MODELS = {
    "ResNet50": keras.applications.ResNet50,
    "MobileNetV2": keras.applications.MobileNetV2,
    "EfficientNetB0": keras.applications.EfficientNetB0,
}
SPARSITY = 0.5
SEED = 0


# ------------------------------------------------------------------ MACs
def count_macs(model) -> int:
    """Multiply-accumulates of one sample through the Conv, DepthwiseConv and
    Dense calls of a Sequential or Functional model (nested models included),
    from the shapes of each call: output positions x kernel window x input
    channels read per output channel."""
    view = model._functional if isinstance(model, keras.Sequential) else model
    total = 0
    for nodes in view._nodes_by_depth.values():
        for node in nodes:
            layer = node.operation
            if node.is_input or layer is None:
                continue
            if isinstance(layer, keras.Model):
                total += count_macs(layer)
                continue
            out = node.outputs[0].shape
            positions = math.prod(out[1:-1])
            if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
                total += positions * out[-1] * math.prod(layer.kernel_size)
            elif isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
                channels = node.input_tensors[0].shape[-1]
                depthwise = channels * layer.depth_multiplier
                total += positions * depthwise * (math.prod(layer.kernel_size) + out[-1])
            elif isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
                channels = node.input_tensors[0].shape[-1] // layer.groups
                total += positions * out[-1] * math.prod(layer.kernel_size) * channels
            elif isinstance(layer, keras.layers.Dense):
                total += positions * out[-1] * node.input_tensors[0].shape[-1]
    return int(total)


# ----------------------------------------------------------------- models
def _build(name: str, size: int):
    keras.utils.set_random_seed(SEED)
    model = MODELS[name](weights=None, input_shape=(size, size, 3), classes=10,
                         classifier_activation=None)
    rng = np.random.default_rng(SEED)
    for layer in model.layers:  # as after training: see the module docstring
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([1 + 0.1 * rng.normal(size=n), 0.1 * rng.normal(size=n),
                               0.1 * rng.normal(size=n), np.exp(0.1 * rng.normal(size=n))])
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(0.05 * rng.normal(size=layer.bias.shape))
    return model


def _strategy():
    return strategies.dense(units=True, protect_outputs=True)


def _prune(model):
    """Half the channels of every layer, by the strategy, in one update."""
    pruned = tfprune.prune(model, tfprune.schedules.Constant(SPARSITY), strategy=_strategy())
    pruned.compile("sgd", "mse")
    callback = tfprune.PruningCallback()
    callback.set_model(pruned)
    callback.on_train_begin()
    callback.on_train_end()
    return tfprune.strip(pruned)


# ---------------------------------------------------------------- latency
def _interpreter(result, sample):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(model_path=result.path, num_threads=1,
                              experimental_op_resolver_type=OpResolverType[result.resolver])
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    for _ in range(5):
        interpreter.invoke()
    return interpreter


def _median_ms(interpreter, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def latencies(results, sample, runs: int) -> list:
    """Median ms of one invocation of each file, measured in turn, 3 rounds."""
    interpreters = [_interpreter(r, sample) for r in results]
    rounds = [[_median_ms(i, runs) for i in interpreters] for _ in range(3)]
    return [statistics.median(r[k] for r in rounds) for k in range(len(results))]


# -------------------------------------------------------------- measure
def _channels(report) -> tuple:
    rows = [r for r in report.rows if r["units_before"] is not None]
    return sum(r["units_before"] for r in rows), sum(r["units_after"] for r in rows)


def measure(name: str, size: int, runs: int, folder: str) -> dict:
    start = time.perf_counter()
    final = _prune(_build(name, size))
    small, report = tfprune.shrink(final, return_report=True)
    rng = np.random.default_rng(SEED)
    batch = rng.normal(size=(4, size, size, 3)).astype("float32")
    ref = keras.ops.convert_to_numpy(final(batch, training=False))
    out = keras.ops.convert_to_numpy(small(batch, training=False))
    results = [export.tflite(m, os.path.join(folder, f"{name}_{tag}.tflite"), sparse=False,
                             sample_inputs=batch[:2])
               for m, tag in ((final, "pruned"), (small, "shrunk"))]
    before_ms, after_ms = latencies(results, batch[:1], runs)
    record = {
        "model": name,
        "params": [final.count_params(), small.count_params()],
        "macs": [count_macs(final), count_macs(small)],
        "channels": list(_channels(report)),
        "latency_ms": [before_ms, after_ms],
        "tflite_bytes": [r.bytes for r in results],
        "max_abs_diff": float(np.max(np.abs(ref - out))),
        "max_abs_output": float(np.max(np.abs(ref))),
        "seconds": time.perf_counter() - start,
    }
    print(f"{name}: params {record['params']}, MACs {record['macs']}, channels "
          f"{record['channels']}, latency {before_ms:.2f} -> {after_ms:.2f} ms, "
          f"max |shrunk - pruned| {record['max_abs_diff']:.3g}", file=sys.stderr, flush=True)
    return record


def run(size: int, runs: int, names) -> dict:
    """The keras.applications part: `{"config": ..., "records": [...]}`."""
    with tempfile.TemporaryDirectory() as folder:
        records = [measure(name, size, runs, folder) for name in names]
    return {
        "config": {
            "input_shape": [size, size, 3], "classes": 10, "weights": "None, BatchNormalization "
            "statistics and biases seeded random (as trained)", "sparsity": SPARSITY,
            "strategy": repr(_strategy()), "latency": f"float32 TFLite, LiteRT, 1 thread, "
            f"median of {runs} invocations on one image, median of 3 rounds",
        },
        "records": records,
    }


# ----------------------------------------------------------------- digits
DIGITS = {"width": 32, "dense_epochs": 40, "finetune_epochs": 20, "ramp_epochs": 10,
          "update_every": 10, "batch_size": 32, "learning_rate": 1e-3}


def digits_cnn(width: int):
    """Two residual stages of 3x3 convolutions (`width`, then `2 * width`)."""
    layers = keras.layers

    def unit(x, filters, strides=1):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inputs = keras.Input((8, 8, 1))
    x = layers.ReLU()(unit(inputs, width))
    for filters, strides in ((width, 1), (2 * width, 2)):
        shortcut = x
        if strides != 1:
            shortcut = layers.BatchNormalization()(
                layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x))
        y = unit(layers.ReLU()(unit(x, filters, strides)), filters)
        x = layers.ReLU()(layers.Add()([shortcut, y]))
        y = unit(layers.ReLU()(unit(x, filters)), filters)
        x = layers.ReLU()(layers.Add()([x, y]))
    outputs = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="digits_resnet")


def _accuracy(model, x, y) -> float:
    return float((model.predict(x, verbose=0).argmax(axis=1) == y).mean())


def _compile(model, recipe):
    model.compile(keras.optimizers.Adam(recipe["learning_rate"]),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def run_digits(runs: int, quick: bool = False) -> dict:
    """Dense, then pruned while fine-tuning, then shrunk, on the digits."""
    from examples import datasets

    recipe = dict(DIGITS)
    if quick:
        recipe.update(dense_epochs=2, finetune_epochs=2, ramp_epochs=1)
    data = datasets.load_digits(SEED)
    x_train, x_val, x_test = (a.reshape(-1, 8, 8, 1) for a in (data.x_train, data.x_val,
                                                                  data.x_test))
    keras.utils.set_random_seed(SEED)
    dense = digits_cnn(recipe["width"])
    _compile(dense, recipe)
    fit = {"batch_size": recipe["batch_size"], "verbose": 0,
           "validation_data": (x_val, data.y_val)}
    dense.fit(x_train, data.y_train, epochs=recipe["dense_epochs"], **fit)
    steps = math.ceil(len(x_train) / recipe["batch_size"])
    schedule = tfprune.schedules.PolynomialDecay(0.0, SPARSITY, 0, recipe["ramp_epochs"] * steps)
    pruned = tfprune.prune(dense, schedule, strategy=_strategy())
    _compile(pruned, recipe)
    pruned.fit(x_train, data.y_train, epochs=recipe["finetune_epochs"], **fit,
               callbacks=[tfprune.PruningCallback(update_every=recipe["update_every"])])
    final = tfprune.strip(pruned)
    small, report = tfprune.shrink(final, return_report=True)
    ref, out = final.predict(x_test, verbose=0), small.predict(x_test, verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        results = [export.tflite(m, os.path.join(folder, f"{tag}.tflite"), sparse=False,
                                 sample_inputs=x_test[:16])
                   for m, tag in ((dense, "dense"), (small, "shrunk"))]
        dense_ms, small_ms = latencies(results, x_test[:1], runs)
    record = {
        "accuracy": {"dense": _accuracy(dense, x_test, data.y_test),
                     "pruned": _accuracy(final, x_test, data.y_test),
                     "shrunk": _accuracy(small, x_test, data.y_test)},
        "params": [dense.count_params(), small.count_params()],
        "macs": [count_macs(dense), count_macs(small)],
        "channels": list(_channels(report)),
        "latency_ms": [dense_ms, small_ms],
        "max_abs_diff": float(np.max(np.abs(ref - out))),
        "max_abs_output": float(np.max(np.abs(ref))),
    }
    print(f"digits: accuracy {record['accuracy']}, MACs {record['macs']}, latency "
          f"{dense_ms * 1e3:.1f} -> {small_ms * 1e3:.1f} us", file=sys.stderr, flush=True)
    return {"recipe": recipe, "test_samples": int(len(x_test)), "latency_runs": runs, **record}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96, help="input height and width")
    parser.add_argument("--runs", type=int, default=50, help="invocations per latency median")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--only", choices=("cnn", "digits"), default=None,
                        help="one part; the other is kept from the existing --output")
    parser.add_argument("--quick", action="store_true", help="32x32 inputs, 5 runs, 2 epochs")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    size, runs = (32, 5) if args.quick else (args.size, args.runs)
    results = {}
    if args.only and os.path.exists(args.output):
        with open(args.output) as f:
            results = json.load(f)
    results.update({
        "description": "Units + shrink on real CNNs (benchmarks/structured.py)",
        "date": datetime.date.today().isoformat(),
        "machine": machine_info(),
        "versions": {"keras": keras.__version__, "tfprune": tfprune.__version__},
    })
    if args.only in (None, "cnn"):
        results.update(run(size, runs, [n for n in args.models.split(",") if n]))
    if args.only in (None, "digits"):
        results["digits"] = run_digits(runs * 20, args.quick)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
