"""Whole-unit pruning: how the allocation across layers changes accuracy.

Measures the "Units and allocation" table of docs/strategies.md: the digits
MLP 64-256-128-10 (`examples.datasets.load_digits`) is trained dense for 30
epochs, then pruned to whole units (L2 norm, output layer protected) while
fine-tuning 8 epochs, with a `PolynomialDecay` from 0 to the target over 200
steps and masks updated every 20 steps; the test accuracy is read after
`strip`. Every accuracy is written to `docs/unit_allocation.json`, from which
`tools/strategy_tables.py` renders the table. Run from the repository root:

    python -m benchmarks.unit_allocation            # 3 seeds, a few minutes on 2 cores
    python -m benchmarks.unit_allocation --seeds 1 --output /tmp/units.json
    python tools/strategy_tables.py                 # then rewrite docs/strategies.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import keras
import numpy as np

import tfprune
from benchmarks._report import machine_info
from examples import datasets
from tfprune import granularity
from tfprune import strategies

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "unit_allocation.json")

ALLOCATIONS = {
    "Uniform()": lambda: strategies.Uniform(),
    'Global(normalize="l2")': lambda: strategies.Global(normalize="l2"),
    'Global(normalize="l2", max_sparsity=0.95)': lambda: strategies.Global(
        normalize="l2", max_sparsity=0.95
    ),
}
SPARSITIES = (0.5, 0.8, 0.9)
RECIPE = {
    "model": "Digits MLP 64-256-128-10, whole units (L2 norm), output layer protected",
    "dense_epochs": 30,
    "finetune_epochs": 8,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "end_step": 200,
    "update_every": 20,
    "metric": "test accuracy after strip",
}


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
    model.fit(data.x_train, data.y_train, epochs=RECIPE["dense_epochs"],
              batch_size=RECIPE["batch_size"], verbose=0)
    return model


def _pruned_accuracy(dense, data, allocation, sparsity, seed) -> float:
    keras.utils.set_random_seed(seed)
    strategy = strategies.Strategy(
        "l2_norm", granularity.Units(), allocation, protect_outputs=True
    )
    schedule = tfprune.schedules.PolynomialDecay(0.0, sparsity, 0, RECIPE["end_step"])
    pruned = tfprune.prune(dense, schedule, strategy=strategy)
    pruned.compile(
        keras.optimizers.Adam(RECIPE["learning_rate"]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    pruned.fit(
        data.x_train, data.y_train, epochs=RECIPE["finetune_epochs"],
        batch_size=RECIPE["batch_size"], verbose=0,
        callbacks=[tfprune.PruningCallback(update_every=RECIPE["update_every"])],
    )
    return _accuracy(tfprune.strip(pruned), data)


def _versions() -> dict:
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "tfprune": tfprune.__version__, "numpy": np.__version__}


def measure(seeds: int) -> dict:
    """Every accuracy of the table, as the dict saved to the JSON file."""
    records, dense = [], []
    for seed in range(seeds):
        data = datasets.load_digits(seed=seed)
        model = _dense(data, seed)
        dense.append(_accuracy(model, data))
        for name, make in ALLOCATIONS.items():
            for sparsity in SPARSITIES:
                acc = _pruned_accuracy(model, data, make(), sparsity, seed)
                records.append({"allocation": name, "sparsity": sparsity, "seed": seed,
                                "accuracy": acc})
                print(f"seed {seed} {name} {sparsity:.0%}: {acc:.3f}", file=sys.stderr,
                      flush=True)
    return {"recipe": dict(RECIPE), "allocations": list(ALLOCATIONS),
            "sparsities": list(SPARSITIES), "seeds": list(range(seeds)),
            "n_test": int(len(data.y_test)), "dense": dense, "records": records}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", default=OUTPUT, help="JSON file to write")
    args = parser.parse_args(argv)
    results = measure(args.seeds)
    results = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            # Where the file goes does not change the figures.
            "command": "python -m benchmarks.unit_allocation"
                       + ("" if args.seeds == 3 else f" --seeds {args.seeds}"),
            "machine": machine_info(),
            "versions": _versions(),
        },
        **results,
    }
    with open(args.output, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
