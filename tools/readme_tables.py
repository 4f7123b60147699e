"""Writes the README's benchmark tables from docs/benchmarks.json.

Every figure between the `<!-- benchmarks:start -->` and
`<!-- benchmarks:end -->` markers of README.md is rendered here from the
saved output of `python -m benchmarks`; `tests/project/test_docs.py` fails
when the README and the JSON disagree. Run from the repository root:

    python tools/readme_tables.py            # rewrite the README block
    python tools/readme_tables.py --check    # exit 1 if it is stale
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
README = os.path.join(ROOT, "README.md")
JSON = os.path.join(ROOT, "docs", "benchmarks.json")
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
SPARSITY = 0.9


def _quality(results) -> str:
    q = results["quality"]
    rows = ["| at 90% sparsity, mean of the seeds | dense | tfmot magnitude | "
            "tfprune magnitude | tfprune global (other method) |",
            "| --- | --- | --- | --- | --- |"]
    for task, cfg in q["tasks"].items():
        def mean(framework, method, target):
            values = [r["metric"] for r in q["records"] if r["task"] == task
                      and r["framework"] == framework and r["method"] == method
                      and abs(r["target"] - target) < 1e-9]
            return statistics.fmean(values) if values else None

        higher = cfg["metric"] == "accuracy"
        fmt = (lambda v: f"{v:.4f}") if higher else (lambda v: f"{v:,.0f}" if v > 1000
                                                     else f"{v:.2f}")
        dense = mean("tfprune", "dense", 0.0)
        tfmot, mine = mean("tfmot", "magnitude", SPARSITY), mean("tfprune", "magnitude", SPARSITY)
        other = mean("tfprune", "global_magnitude", SPARSITY)
        like = [tfmot, mine]
        best = max(like) if higher else min(like)
        cells = [fmt(v) if v is not None else "n/a" for v in (dense, tfmot, mine, other)]
        for i, v in ((1, tfmot), (2, mine)):
            if v is not None and v == best:
                cells[i] = f"**{cells[i]}**"
        rows.append(f"| {cfg['title']}, {cfg['metric_label']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _ms(seconds) -> str:
    ms = seconds * 1e3
    return f"{ms:,.2f} ms" if ms < 10 else f"{ms:,.0f} ms"


def _cost(results) -> str:
    rows = ["| cost | tfmot | tfprune |", "| --- | --- | --- |"]
    update = {(r["size"], r["framework"], r["mode"]): r["median_s"]
              for r in results["update"]["records"]}
    for size in sorted({r["size"] for r in results["update"]["records"]}):
        tfmot = update.get((size, "tfmot", "tf.function"))
        mine = update.get((size, "tfprune", "callback"))
        if tfmot is None or mine is None:
            continue
        rows.append(f"| one update of every mask (callback path), {size:,} weights | "
                    f"{_ms(tfmot)} | {_ms(mine)} |")
    # Pruned/unpruned `fit` ratios: one run decides nothing at this
    # machine's noise; they come from `python -m benchmarks.cost`'s repeats
    # (the block below this one, `tools/cost_tables.py`).
    layers = results["cost"].get("layers")
    if layers:
        rows.append(f"| MobileNetV2 ({layers['pruned_layers']} pruned layers): one update, "
                    f"fit ratio at every {layers['every']} steps | - | "
                    f"{_ms(layers['update_all_s'])}, {layers['ratio']:.2f} |")
    files = {(f["framework"], f["variant"], f["format"], f["quantize"]): f["bytes"]
             for f in results["artifacts"]["files"]}
    for label, key in (("TFLite float32 sparse", ("sparse", "tflite", None)),
                       ("TFLite dynamic int8 sparse", ("sparse", "tflite", "dynamic"))):
        tfmot, mine = files.get(("tfmot",) + key), files.get(("tfprune",) + key)
        if tfmot and mine:
            rows.append(f"| digits MLP at 90%, {label} | {tfmot / 1024:.1f} KiB | "
                        f"{mine / 1024:.1f} KiB |")
    shrunk = files.get(("tfprune", "shrunk", "tflite", None))
    if shrunk:
        rows.append(f"| digits MLP, units removed by `shrink`, TFLite float32 | - | "
                    f"{shrunk / 1024:.1f} KiB |")
    return "\n".join(rows)


def render(results) -> str:
    meta = results["meta"]
    return "\n".join([
        START,
        f"Measured by `{meta['commands'][0]}` on {meta['date'][:10]} "
        f"({meta['machine']['cores']}-core CPU; tfmot 0.8.1 on `tf_keras` in a separate "
        "process, same data, dense weights, schedule, update frequency and epochs). Like "
        "for like first (per-layer magnitude in both), tfprune's global ranking beside it; "
        "full tables, spreads and commands: [docs/BENCHMARKS.md](docs/BENCHMARKS.md).",
        "",
        _quality(results),
        "",
        _cost(results),
        END,
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    with open(JSON) as f:
        block = render(json.load(f))
    return update_page(README, [block], args.check)


if __name__ == "__main__":
    sys.exit(main())
