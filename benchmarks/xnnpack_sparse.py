"""Does sparsity from `PruneForLatencyOnXNNPack` make a model faster in LiteRT?

    python -m benchmarks.xnnpack_sparse [--size 96] [--runs 100] [--out docs/xnnpack_sparse.json]

A MobileNet-shaped model that satisfies the policy (ZeroPadding2D + 3x3
stride-2 Conv2D, then depthwise 3x3 and pointwise 1x1 blocks, ending in
GlobalAveragePooling2D) is pruned with `tfprune.compat.tfmot` and the
policy, so that only its 1x1 convolutions become sparse (0%, 75%, 90%),
stripped and exported to float TFLite with and without sparse storage
(`tfprune.export.tflite(..., sparse=...)`; sparse storage is what tfmot's
guide asks the converter for with `EXPERIMENTAL_SPARSITY`). Each file runs
in the Python LiteRT interpreter of this machine with the default delegate
(XNNPACK) and without it (builtin kernels), one and two threads: median ms
of one invocation on one image, median of 3 rounds, the files in turn.
Saved to docs/xnnpack_sparse.json; `python tools/migration_tables.py`
renders it into docs/migration.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "xnnpack_sparse.json")


def model(size: int):
    import keras

    L = keras.layers
    layers = [keras.Input((size, size, 3)), L.ZeroPadding2D(1),
              L.Conv2D(32, 3, strides=2, padding="valid"), L.BatchNormalization(), L.ReLU()]
    for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                            (512, 1), (512, 1)):
        if stride == 2:
            layers += [L.ZeroPadding2D(1), L.DepthwiseConv2D(3, strides=2, padding="valid")]
        else:
            layers += [L.DepthwiseConv2D(3, padding="same")]
        layers += [L.BatchNormalization(), L.ReLU(), L.Conv2D(filters, 1), L.BatchNormalization(),
                   L.ReLU()]
    layers += [L.GlobalAveragePooling2D(keepdims=True), L.Flatten(), L.Dense(10)]
    return keras.Sequential(layers)


def pruned(base, sparsity: float, size: int):
    """`base` with its 1x1 convolutions at `sparsity`, through the tfmot API."""
    import keras

    import tfprune.compat.tfmot as tfmot

    if sparsity == 0:
        return base
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    model = tfmot.sparsity.keras.prune_low_magnitude(
        base, pruning_schedule=schedule,
        pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack())
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    model.fit(x, np.zeros((2, 10), "float32"), epochs=1, batch_size=2, verbose=0,
              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(model)


def _interpreter(path, resolver, threads, sample):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(model_path=path, num_threads=threads,
                              experimental_op_resolver_type=OpResolverType[resolver])
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    for _ in range(5):
        interpreter.invoke()
    return interpreter


def measure(size: int, runs: int) -> dict:
    import keras

    import tfprune
    from benchmarks.structured import _median_ms

    keras.utils.set_random_seed(0)
    base = model(size)
    sample = np.random.default_rng(1).normal(size=(1, size, size, 3)).astype("float32")
    files, records = [], []
    with tempfile.TemporaryDirectory() as folder:
        for sparsity in (0.0, 0.75, 0.9):
            stripped = pruned(base, sparsity, size)
            for sparse in (False, True) if sparsity else (False,):
                path = os.path.join(folder, f"s{int(sparsity * 100)}_{sparse}.tflite")
                result = tfprune.export.tflite(stripped, path, sparse=sparse)
                files.append({"sparsity": sparsity, "sparse_storage": sparse, "path": path,
                              "bytes": os.path.getsize(path),
                              "sparse_tensors": len(result.sparse_tensors)})
        for resolver in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            for threads in (1, 2):
                interpreters = []
                for f in files:
                    try:
                        interpreters.append(_interpreter(f["path"], resolver, threads, sample))
                    except (RuntimeError, ValueError) as e:
                        interpreters.append(str(e).splitlines()[0])
                rounds = [[None if isinstance(i, str) else _median_ms(i, runs)
                           for i in interpreters] for _ in range(3)]
                for k, f in enumerate(files):
                    failed = interpreters[k] if isinstance(interpreters[k], str) else None
                    ms = None if failed else statistics.median(r[k] for r in rounds)
                    records.append({"sparsity": f["sparsity"], "sparse_storage": f["sparse_storage"],
                                    "bytes": f["bytes"], "sparse_tensors": f["sparse_tensors"],
                                    "resolver": resolver, "threads": threads, "ms": ms,
                                    "error": failed})
                    print(f"{resolver:>34} threads {threads} sparsity {f['sparsity']:.2f} "
                          f"sparse storage {f['sparse_storage']!s:>5}: "
                          + (f"{ms:.2f} ms" if ms is not None else f"failed: {failed}"),
                          flush=True)
    from ai_edge_litert import __version__ as litert

    return {"size": size, "runs": runs, "records": records,
            "parameters": int(base.count_params()),
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "versions": {"keras": keras.__version__, "litert": litert},
            "command": "python -m benchmarks.xnnpack_sparse"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    document = measure(args.size, args.runs)
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    print(f"wrote {args.out}; `python tools/migration_tables.py` renders it")


if __name__ == "__main__":
    main()
