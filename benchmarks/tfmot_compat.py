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
`docs/tfmot_compat.json` and rendered into docs/migration.md
(`python -m benchmarks.tfmot_compat --render`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PYTHON = os.path.join(ROOT, ".venv-bench", "bin", "python")
OUT = os.path.join(ROOT, "docs", "tfmot_compat.json")
DOC = os.path.join(ROOT, "docs", "migration.md")
START, END = "<!-- tfmot-compat:start -->", "<!-- tfmot-compat:end -->"
TITLES = {"cnn": "CNN, PolynomialDecay 0.5 -> 0.8 (the Keras pruning guide)",
          "two_of_four": "mixed: 50% unstructured + two 2:4 layers (the 2:4 guide)",
          "lstm": "LSTM(32), ConstantSparsity 0.75"}


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


def _spread(values, digits=4) -> str:
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def render(document) -> str:
    """The Markdown table of `document` (see `measure`)."""
    lines = ["| program | tensor | zeros, tfmot | zeros, compat | accuracy, tfmot "
             "| accuracy, compat |", "| --- | --- | --- | --- | --- | --- |"]
    runs = document["runs"]
    for name, title in TITLES.items():
        by_side = {side: [r["results"][name] for r in runs if r["side"] == side]
                   for side in ("tfmot", "compat")}
        tensors = list(by_side["compat"][0]["zeros"])
        for k, tensor in enumerate(tensors):
            zeros = {side: [r["zeros"][tensor] for r in rs] for side, rs in by_side.items()}
            accuracy = {side: [r["accuracy"] for r in rs] for side, rs in by_side.items()}
            lines.append(
                f"| {title if k == 0 else ''} | `{tensor}` | {_spread(zeros['tfmot'])} "
                f"| {_spread(zeros['compat'])} | "
                + (f"{_spread(accuracy['tfmot'])} | {_spread(accuracy['compat'])} |"
                   if k == 0 else " | |"))
    gates = []
    for side in ("tfmot", "compat"):
        per_gate = [r["results"]["lstm"]["gates"]["lstm/recurrent_kernel"]
                    for r in runs if r["side"] == side]
        values = ", ".join(f"{name} {min(g[k] for g in per_gate):.2f}–"
                           f"{max(g[k] for g in per_gate):.2f}"
                           for k, name in enumerate(("input", "forget", "cell", "output")))
        gates.append(f"{side}: {values}")
    v = document["versions"]
    lines += ["", "Zeros per gate of the LSTM's recurrent kernel, min–max over the seeds: "
              + "; ".join(gates) + ".", "", f"Mean [min–max] over seeds {document['seeds']}: the same program "
              "(`benchmarks/_tfmot_program.py`, only its imports differ) from the same dense "
              "weights, digits data (1,400 training, 397 test images), 4 epochs of pruning. "
              f"tfmot {v['tfmot'].get('tfmot')} on tf_keras (TensorFlow "
              f"{v['tfmot'].get('tensorflow')}) against tfprune.compat.tfmot on Keras "
              f"{v['compat (Keras)']}. Zeros: the fraction of each kernel after "
              f"`strip_pruning`. Measured by `{document['command']}` on {document['date']} "
              f"({document['machine']})."]
    return "\n".join(lines)


def write_doc(document, path=DOC) -> None:
    with open(path) as f:
        text = f.read()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    with open(path, "w") as f:
        f.write(f"{head}{START}\n\n{render(document)}\n\n{END}{tail}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--render", action="store_true",
                        help="only render the saved results into docs/migration.md")
    args = parser.parse_args(argv)
    if not args.render:
        document = measure(args.seeds)
        with open(args.out, "w") as f:
            json.dump(document, f, indent=1)
        print(f"wrote {args.out}")
    with open(args.out) as f:
        write_doc(json.load(f))
    print(f"rendered into {DOC}")


if __name__ == "__main__":
    main()
