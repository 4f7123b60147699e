"""Pruned vs plain `fit` on TensorFlow and on JAX, same models and data.

    python -m benchmarks.backends             # both backends, full recipe
    python -m benchmarks.backends --quick     # a smoke run

For each backend and each task of the cost benchmark (California-housing
MLP, PM2.5 LSTM): epoch times of an unpruned and a pruned `fit` with the
masks updated every 50 steps and with constant masks, alternated for
several rounds (`benchmarks._tfprune_side.cost`). Each run is a child
process (`KERAS_BACKEND` set before Keras is imported): TensorFlow with the
callback's default (`in_step="auto"`), JAX with the default (the update
inside the jitted train step) and with `in_step=False` (the update between
steps, as before JAX had the in-step update). The runs are repeated
(`--repeats`, a fresh process each, in a rotated order) and the table gives
the median [min-max] of pruned / plain over the repeats: on this machine a
single run's ratio moves by 15-25%. Writes `docs/backends.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import _models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: (backend, the callback's `in_step`) of each run.
RUNS = (("tensorflow", "auto"), ("jax", "auto"), ("jax", False))
FREQUENCIES = (50, "constant")

_CHILD = r"""
import json, sys
import keras
from benchmarks import _models
from benchmarks import _tfprune_side as side
quick, out, in_step = sys.argv[1] == "1", sys.argv[2], json.loads(sys.argv[3])
configs = _models.task_configs(quick, ["housing", "pm25"])
epochs, rounds = (2, 1) if quick else (4, 3)
records = side.cost(configs, 0.9, epochs, rounds, (5, "constant") if quick else (50, "constant"),
                    in_step=in_step)
json.dump({"backend": keras.backend.backend(), "in_step": in_step, "records": records},
          open(out, "w"))
"""


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one round, one repeat")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per backend and setting (default 3)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "backends.json"))
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else max(1, args.repeats)
    start = time.perf_counter()
    results = []
    for repeat in range(repeats):
        shift = repeat % len(RUNS)  # each setting goes first in turn
        for backend, in_step in RUNS[shift:] + RUNS[:shift]:
            out = args.out + f".{backend}.tmp"
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
            subprocess.run([sys.executable, "-c", _CHILD, "1" if args.quick else "0", out,
                            json.dumps(in_step)], cwd=ROOT, env=env, check=True)
            with open(out) as f:
                results.append(dict(json.load(f), repeat=repeat))
            os.remove(out)
    result = {"results": results, "repeats": repeats}
    # docs/distributed.md quotes the table.
    return _models.save_result(result, table(result), start=start, quick=args.quick,
                               out=args.out, command="python -m benchmarks.backends")


def _spread(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def table(result: dict) -> str:
    """Markdown: plain epoch time and pruned / plain (median [min-max] over
    the repeats), per task, backend and setting."""
    cells = {}  # (task, backend, in_step) -> {"dense": [...], every: [ratios]}
    for res in result["results"]:
        for r in res["records"]:
            key = (r["task"], res["backend"], json.dumps(res.get("in_step", "auto")))
            cell = cells.setdefault(key, {"dense": []})
            cell["dense"].extend(r["dense_epoch_s"])
            kind = "constant" if r["every"] == "constant" else "every"
            cell.setdefault(kind, []).append(r["ratio"])
    rows = ["| task | backend | `in_step` | plain epoch (s) | pruned / plain, every 50 | "
            "pruned / plain, constant masks |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for (task, backend, in_step), cell in sorted(cells.items(), key=lambda kv: kv[0][0]):
        rows.append(f"| {task} | {backend} | {in_step.strip(chr(34))} | "
                    f"{statistics.median(cell['dense']):.3f} | {_spread(cell['every'])} | "
                    f"{_spread(cell['constant'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
