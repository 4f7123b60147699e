"""Writes the side-by-side tables of docs/migration.md from their saved
results: tfmot vs `tfprune.compat.tfmot` (docs/tfmot_compat.json, from
`python -m benchmarks.tfmot_compat`) and the LiteRT latency of XNNPACK
sparsity (docs/xnnpack_sparse.json, from `python -m
benchmarks.xnnpack_sparse`). `tests/compat/test_tfmot_docs.py` fails when
the page and the JSON disagree. Run from the repository root:

    python tools/migration_tables.py            # rewrite the blocks
    python tools/migration_tables.py --check    # exit 1 if one is stale
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

try:  # imported as `tools.<name>` (tests), or run as a script from tools/
    from tools._blocks import update_page
except ImportError:
    from _blocks import update_page

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "migration.md")
TFMOT_JSON = os.path.join(ROOT, "docs", "tfmot_compat.json")
XNNPACK_JSON = os.path.join(ROOT, "docs", "xnnpack_sparse.json")
TITLES = {"cnn": "CNN, PolynomialDecay 0.5 -> 0.8 (the Keras pruning guide)",
          "two_of_four": "mixed: 50% unstructured + two 2:4 layers (the 2:4 guide)",
          "lstm": "LSTM(32), ConstantSparsity 0.75"}


def _spread(values, digits=4) -> str:
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def _tfmot_table(document) -> str:
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


def _xnnpack_table(document) -> str:
    records = document["records"]
    lines = ["| LiteRT kernels | threads | dense | 75%, dense storage | 75%, sparse storage "
             "| 90%, dense storage | 90%, sparse storage |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    names = {"AUTO": "default (XNNPACK delegate)",
             "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "builtin, no delegate"}
    for resolver, title in names.items():
        for threads in (1, 2):
            cells = []
            for sparsity, sparse in ((0.0, False), (0.75, False), (0.75, True), (0.9, False),
                                     (0.9, True)):
                (r,) = [r for r in records if r["resolver"] == resolver and r["threads"] == threads
                        and r["sparsity"] == sparsity and r["sparse_storage"] == sparse]
                cells.append("fails" if r["ms"] is None else f"{r['ms']:.2f} ms")
            lines.append(f"| {title} | {threads} | " + " | ".join(cells) + " |")
    sizes = {(r["sparsity"], r["sparse_storage"]): r["bytes"] for r in records}
    v = document["versions"]
    lines += ["", f"A MobileNet-shaped model ({document['size']}x{document['size']}x3 input, "
              f"{document['parameters']:,} parameters) that `PruneForLatencyOnXNNPack` accepts, "
              "its 1x1 convolutions pruned through `tfprune.compat.tfmot`; float32 TFLite "
              f"({sizes[(0.0, False)] / 1024:,.0f} KiB dense, "
              f"{sizes[(0.9, True)] / 1024:,.0f} KiB at 90% with sparse storage). Median ms of "
              f"one invocation on one image ({document['runs']} runs, median of 3 rounds). "
              f"Python LiteRT {v['litert']}, Keras {v['keras']}. Measured by "
              f"`{document['command']}` on {document['date']} ({document['machine']})."]
    return "\n".join(lines)


def _block(name: str, table: str) -> str:
    return "\n".join([f"<!-- {name}:start -->", "", table, "", f"<!-- {name}:end -->"])


def render_tfmot(document) -> str:
    """The tfmot-compat block of docs/migration.md (markers included)."""
    return _block("tfmot-compat", _tfmot_table(document))


def render_xnnpack(document) -> str:
    """The xnnpack block of docs/migration.md (markers included)."""
    return _block("xnnpack", _xnnpack_table(document))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    args = parser.parse_args(argv)
    with open(TFMOT_JSON) as f:
        tfmot = json.load(f)
    with open(XNNPACK_JSON) as f:
        xnnpack = json.load(f)
    return update_page(DOC, [render_tfmot(tfmot), render_xnnpack(xnnpack)], args.check)


if __name__ == "__main__":
    sys.exit(main())
