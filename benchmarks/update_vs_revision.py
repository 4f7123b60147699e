"""Mask-update cost of this checkout against an earlier revision, same run.

    python -m benchmarks.update_vs_revision                  # against 0.1.0
    python -m benchmarks.update_vs_revision --rev HEAD~3 --sizes 10000,1000000

Timings taken on different days, or under a different load, do not compare:
this script times both trees in the same run, alternating one process per
(tree, size) so that both see the same machine. The earlier tree is checked
out with `git worktree` into a temporary folder (removed afterwards). Both
run the same protocol, written against the API the two share: a stack of 4
square Dense layers (`benchmarks._models.big_dense_model`), `tfprune.prune`
with a linear `PolynomialDecay`, `PruningCallback(update_every=1)`, and
`update_masks(step)` timed at every step:

- `moving`: the target rises from 81% to 90% over the timed calls, so every
  call selects anew;
- `unchanged`: the target is 90% at every step, reached at the first call:
  the later calls cannot change a mask.

Writes `docs/update_vs_revision.json` (every time, per call, and the table
the README quotes) and prints the table: median ms per update for each
tree, and the ratio new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import _models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The 0.1.0 release: the last commit before the compiled update.
RELEASE = "5529303"
MODES = ("moving", "unchanged")

_WORKER = r"""
import gc, json, sys, time
import keras, numpy as np
import tfprune
from benchmarks import _models

size, mode, repeats = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
start, end = (0.9, 10**9) if mode == "unchanged" else (0.81, repeats + 1)
model = tfprune.prune(_models.big_dense_model(keras, size),
                      tfprune.schedules.PolynomialDecay(start, 0.9, 0, end, power=1))
gc.collect()
model.compile(optimizer="sgd", loss="mse")
callback = tfprune.PruningCallback(update_every=1)
callback.set_model(model)
callback.on_train_begin()
clock = iter(range(1, 10**9))
times = _models.timed(lambda: callback.update_masks(next(clock)), repeats)
masks = [m.numpy() for layer in model.layers for m in getattr(layer, "masks", [])]
zeros = sum(int(m.size - np.count_nonzero(m)) for m in masks)
print(json.dumps({"times": times, "sparsity": zeros / sum(m.size for m in masks)}))
"""


def _run(tree: str, size: int, mode: str, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", _WORKER, str(size), mode, str(repeats)],
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default=RELEASE, help="earlier revision (default: 0.1.0)")
    parser.add_argument("--sizes", default="10000,1000000,10000000,100000000",
                        help="prunable weights per model, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "update_vs_revision.json"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    start = time.perf_counter()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "old")
        subprocess.run(["git", "worktree", "add", "--detach", old, args.rev], cwd=ROOT,
                       check=True, capture_output=True)
        # The protocol's helpers come from this checkout in both runs.
        subprocess.run(["cp", "-r", os.path.join(ROOT, "benchmarks"), old], check=True)
        try:
            for size in sizes:
                for mode in MODES:
                    for name, tree in (("old", old), ("new", ROOT)):
                        rec = _run(tree, size, mode, args.repeats)
                        median = sorted(rec["times"])[len(rec["times"]) // 2]
                        records.append({"tree": name, "size": size, "mode": mode,
                                        "median_s": median, **rec})
                        print(f"  {name} {size:>11,} {mode:9s} {median * 1e3:9.2f} ms "
                              f"(sparsity {rec['sparsity']:.4f})", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", old], cwd=ROOT,
                           capture_output=True)
    result = {"old": args.rev, "new": head, "repeats": args.repeats, "records": records}
    command = "python -m benchmarks.update_vs_revision " + " ".join(argv if argv is not None
                                                                    else sys.argv[1:])
    return _models.save_result(result, table(result), start=start, command=command.strip(),
                               quick=False, out=args.out)


def table(result: dict) -> str:
    """Markdown: median ms per update for each tree, and new / old."""
    med = {(r["tree"], r["size"], r["mode"]): r["median_s"] for r in result["records"]}
    rows = [f"| weights | mode | {result['old']} (ms) | {result['new']} (ms) | new / old |",
            "| ---: | --- | ---: | ---: | ---: |"]
    for size in sorted({k[1] for k in med}):
        for mode in MODES:
            old, new = med.get(("old", size, mode)), med.get(("new", size, mode))
            if old is None or new is None:
                continue
            rows.append(f"| {size:,} | {mode} | {old * 1e3:,.2f} | {new * 1e3:,.2f} | "
                        f"{new / old:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
