"""The same tfmot program under real tfmot and under tfprune.compat.tfmot.

    python -m benchmarks.tfmot_compat [--seeds 0 1 2] [--out docs/tfmot_compat.json]

`benchmarks/_tfmot_program.py` (three of tfmot's guide programs: a CNN with
PolynomialDecay, the 2:4 guide's mixed model, an LSTM with
ConstantSparsity) runs once per seed on each side, in processes of their
own, the sides alternating: tfmot 0.8.1 on tf_keras in the .venv-bench
interpreter (`make bench-env`), and the compatibility module on Keras 3 in
this one. Both start from the same dense weights (trained here once per
seed). The result, per program and seed, is the test accuracy and the
fraction of zeros of every kernel after `strip_pruning`; it is written to
`docs/tfmot_compat.json`; `python tools/migration_tables.py` renders it into
docs/migration.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PYTHON = os.path.join(ROOT, ".venv-bench", "bin", "python")
OUT = os.path.join(ROOT, "docs", "tfmot_compat.json")



def _weights(seed: int, path: str) -> None:
    from benchmarks import _tfmot_program as program

    data = program.digits(seed)
    arrays = {"seed": np.asarray(seed)}
    for name in program.MODELS:
        weights = program.train_dense(name, data, seed)
        arrays[f"{name}_count"] = np.asarray(len(weights))
        arrays.update({f"{name}_{i}": w for i, w in enumerate(weights)})
    np.savez(path, **arrays)


def _side(side: str, weights: str, folder: str) -> dict:
    out = os.path.join(folder, f"{side}.json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    python = sys.executable
    if side == "tfmot":
        env["TF_USE_LEGACY_KERAS"] = "1"
        python = BENCH_PYTHON
    subprocess.run([python, "-m", "benchmarks._tfmot_program", side, weights, out],
                   check=True, cwd=ROOT, env=env)
    with open(out) as f:
        return json.load(f)


def measure(seeds) -> dict:
    if not os.path.exists(BENCH_PYTHON):
        raise SystemExit("needs the tfmot environment: run `make bench-env` first")
    runs = []
    for i, seed in enumerate(seeds):
        with tempfile.TemporaryDirectory() as folder:
            weights = os.path.join(folder, "weights.npz")
            _weights(seed, weights)
            order = ("tfmot", "compat") if i % 2 == 0 else ("compat", "tfmot")
            for side in order:
                result = _side(side, weights, folder)
                runs.append(result)
                print(f"seed {seed} {side}: " + ", ".join(
                    f"{name} accuracy {r['accuracy']:.4f}" for name, r in result["results"].items()),
                    flush=True)
    import keras

    return {"seeds": list(seeds), "runs": runs,
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "versions": {"compat (Keras)": keras.__version__,
                         "tfmot": next(r["versions"] for r in runs if r["side"] == "tfmot")},
            "command": "python -m benchmarks.tfmot_compat"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    document = measure(args.seeds)
    with open(args.out, "w") as f:
        json.dump(document, f, indent=1)
    print(f"wrote {args.out}; `python tools/migration_tables.py` renders it")


if __name__ == "__main__":
    main()
