"""Pruned vs plain `fit` on TensorFlow and on JAX, same models and data.

    python -m benchmarks.backends             # both backends, full recipe
    python -m benchmarks.backends --quick     # a smoke run

For each backend (one child process each, `KERAS_BACKEND` set before Keras
is imported) and each task of the cost benchmark (California-housing MLP,
PM2.5 LSTM): epoch times of an unpruned and a pruned `fit` with the masks
updated every 50 steps and with constant masks, alternated for several
rounds (`benchmarks._tfprune_side.cost`, the recipe of `python -m
benchmarks --only cost`). Writes `docs/backends.json` and prints a table:
plain epoch time per backend, and pruned / plain per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import _models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax")
FREQUENCIES = (50, "constant")

_CHILD = r"""
import json, sys
import keras
from benchmarks import _models
from benchmarks import _tfprune_side as side
quick, out = sys.argv[1] == "1", sys.argv[2]
configs = _models.task_configs(quick, ["housing", "pm25"])
epochs, rounds = (2, 1) if quick else (4, 3)
records = side.cost(configs, 0.9, epochs, rounds, (5, "constant") if quick else (50, "constant"))
json.dump({"backend": keras.backend.backend(), "records": records}, open(out, "w"))
"""


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one round")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "backends.json"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = []
    for backend in BACKENDS:
        out = args.out + f".{backend}.tmp"
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, "-c", _CHILD, "1" if args.quick else "0", out],
                       cwd=ROOT, env=env, check=True)
        with open(out) as f:
            results.append(json.load(f))
        os.remove(out)
    result = {"results": results}
    # docs/distributed.md quotes the table.
    return _models.save_result(result, table(result), start=start, quick=args.quick,
                               out=args.out, command="python -m benchmarks.backends")


def table(result: dict) -> str:
    """Markdown: plain epoch time and pruned / plain, per backend and task."""
    import statistics

    rows = ["| task | backend | plain epoch (s) | pruned / plain, every 50 | "
            "pruned / plain, constant masks |", "| --- | --- | ---: | ---: | ---: |"]
    for res in result["results"]:
        by_task = {}
        for r in res["records"]:
            by_task.setdefault(r["task"], {})[r["every"]] = r
        for task, recs in by_task.items():
            dense = statistics.median(t for r in recs.values() for t in r["dense_epoch_s"])
            every = next((r for k, r in recs.items() if k != "constant"), None)
            constant = recs.get("constant")
            rows.append(f"| {task} | {res['backend']} | {dense:.3f} | "
                        f"{every['ratio']:.2f} | {constant['ratio']:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
