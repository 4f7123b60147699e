"""Whole-unit pruning: how the allocation across layers changes accuracy.

Reproduces the "Units and allocation" table of docs/strategies.md: the
digits MLP 64-256-128-10 (`examples.datasets.load_digits`) is trained dense
for 30 epochs, then pruned to whole units (L2 norm) while fine-tuning 8
epochs, with a `PolynomialDecay` from 0 to the target over 200 steps and
masks updated every 20 steps; the test accuracy is read after `strip`.

    python benchmarks/unit_allocation.py            # 3 seeds, about 2 minutes on 2 cores
    python benchmarks/unit_allocation.py --seeds 1
"""

from __future__ import annotations

import argparse
import statistics
import sys

import keras
import numpy as np

import tfprune
from examples import datasets
from tfprune import granularity
from tfprune import strategies

ALLOCATIONS = {
    "Uniform() (the preset)": lambda: strategies.Uniform(),
    'Global(normalize="l2")': lambda: strategies.Global(normalize="l2"),
    'Global(normalize="l2", max_sparsity=0.95)': lambda: strategies.Global(
        normalize="l2", max_sparsity=0.95
    ),
}
SPARSITIES = (0.5, 0.8, 0.9)


def _accuracy(model, data) -> float:
    logits = model.predict(data.x_test, verbose=0)
    return float((logits.argmax(axis=1) == data.y_test).mean())


def _dense(data, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, epochs=30, batch_size=32, verbose=0)
    return model


def _pruned_accuracy(dense, data, allocation, sparsity, seed) -> float:
    keras.utils.set_random_seed(seed)
    strategy = strategies.Strategy(
        "l2_norm", granularity.Units(), allocation, protect_outputs=True
    )
    schedule = tfprune.schedules.PolynomialDecay(0.0, sparsity, 0, 200)
    pruned = tfprune.prune(dense, schedule, strategy=strategy)
    pruned.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    pruned.fit(
        data.x_train, data.y_train, epochs=8, batch_size=32, verbose=0,
        callbacks=[tfprune.PruningCallback(update_every=20)],
    )
    return _accuracy(tfprune.strip(pruned), data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    results = {name: {s: [] for s in SPARSITIES} for name in ALLOCATIONS}
    dense_acc = []
    for seed in range(args.seeds):
        data = datasets.load_digits(seed=seed)
        dense = _dense(data, seed)
        dense_acc.append(_accuracy(dense, data))
        for name, make in ALLOCATIONS.items():
            for sparsity in SPARSITIES:
                acc = _pruned_accuracy(dense, data, make(), sparsity, seed)
                results[name][sparsity].append(acc)
                print(f"seed {seed} {name} {sparsity:.0%}: {acc:.3f}", file=sys.stderr, flush=True)
    print(f"Digits MLP, whole units (L2 norm), test accuracy, mean of {args.seeds} seed(s); "
          f"dense: {statistics.mean(dense_acc):.3f}\n")
    print("| Allocation | " + " | ".join(f"{s:.0%}" for s in SPARSITIES) + " |")
    print("|---|" + "---|" * len(SPARSITIES))
    for name, row in results.items():
        cells = " | ".join(f"{np.mean(row[s]):.3f}" for s in SPARSITIES)
        print(f"| `{name}` | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
