"""Writes the evidence tables of docs/strategies.md from the saved results.

Two blocks of docs/strategies.md are rendered here, and nothing between
their markers is written by hand:

- `<!-- presets:start -->` ... `<!-- presets:end -->`: for each preset,
  the quality of the benchmark method it uses, on its tasks, beside the
  alternatives, from docs/benchmarks.json (`python -m benchmarks`);
- `<!-- unit-allocation:start -->` ... `<!-- unit-allocation:end -->`: the
  allocations of whole-unit pruning, from docs/unit_allocation.json
  (`python -m benchmarks.unit_allocation`).

`tests/project/test_preset_evidence.py` fails when the document and the
rendering disagree, and when a preset's method stops being the best
measured. Run from the repository root:

    python tools/strategy_tables.py            # rewrite the blocks
    python tools/strategy_tables.py --check    # exit 1 if one is stale
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
DOC = os.path.join(ROOT, "docs", "strategies.md")
BENCHMARKS = os.path.join(ROOT, "docs", "benchmarks.json")
UNITS = os.path.join(ROOT, "docs", "unit_allocation.json")

#: preset -> (the benchmark method it is, the tasks of its model family).
PRESETS = {
    "dense": ("global_magnitude", ("housing", "digits")),
    "recurrent": ("global_magnitude", ("pm25",)),
}
#: The allocation of the unit presets, as labelled in docs/unit_allocation.json.
UNITS_PRESET = "Uniform()"
#: The per-tensor alternative shown beside each preset.
PER_TENSOR = "magnitude"
LABELS = {"global_magnitude": "global magnitude", "magnitude": "magnitude, each tensor "
          "at the target"}


# ------------------------------------------------------------ aggregates
def seed_stats(quality: dict) -> dict:
    """`{(task, method, target): (mean, std)}` of tfprune's pruned records,
    over the seeds (population std)."""
    groups = {}
    for r in quality["records"]:
        if r["framework"] == "tfprune" and r["method"] != "dense":
            groups.setdefault((r["task"], r["method"], r["target"]), []).append(r["metric"])
    return {k: (statistics.fmean(v), statistics.pstdev(v)) for k, v in groups.items()}


def ranked(quality: dict, task: str, target: float) -> list:
    """`[(method, mean, std)]` measured on `task` at `target`, best first."""
    higher = quality["tasks"][task]["metric"] == "accuracy"
    rows = [(m, mean, std) for (t, m, s), (mean, std) in seed_stats(quality).items()
            if t == task and abs(s - target) < 1e-9]
    return sorted(rows, key=lambda row: -row[1] if higher else row[1])


def _fmt(value: float, task_cfg: dict) -> str:
    if task_cfg["metric"] == "accuracy":
        return f"{value:.4f}"
    return f"{value:,.0f}" if value > 1000 else f"{value:.2f}"


# --------------------------------------------------------------- presets
def _task_table(quality: dict, task: str, method: str) -> list:
    cfg = quality["tasks"][task]
    targets = quality["sparsities"]
    header = f"| {cfg['title']}, {cfg['metric_label']} | " + " | ".join(
        f"{t:.0%}" for t in targets) + " |"
    rows = {method: [], PER_TENSOR: [], "other": []}
    for target in targets:
        ranking = ranked(quality, task, target)
        best = ranking[0][0]
        by_method = {m: mean for m, mean, _ in ranking}
        for name in (method, PER_TENSOR):
            cell = _fmt(by_method[name], cfg)
            rows[name].append(f"**{cell}**" if name == best else cell)
        other = next(r for r in ranking if r[0] not in (method, PER_TENSOR))
        cell = f"{_fmt(other[1], cfg)} ({other[0]})"
        rows["other"].append(f"**{cell}**" if other[0] == best else cell)
    return [
        header,
        "|---|" + "---|" * len(targets),
        f"| {LABELS[method]} (the preset) | " + " | ".join(rows[method]) + " |",
        f"| {LABELS[PER_TENSOR]} | " + " | ".join(rows[PER_TENSOR]) + " |",
        "| best other method | " + " | ".join(rows["other"]) + " |",
    ]


def presets_block(quality: dict, meta: dict) -> str:
    """The `presets` block: one table per preset and task."""
    seeds = len(quality["seeds"])
    lines = [
        "<!-- presets:start -->",
        f"Measured by `{meta['commands'][0]}` on {meta['date'][:10]} "
        f"({meta['machine']['cores']}-core CPU; docs/benchmarks.json, docs/BENCHMARKS.md): "
        "each method prunes the same dense weights while fine-tuning, with a cubic "
        "`PolynomialDecay` to the target; the test metric after `strip`, mean of "
        f"{seeds} seeds. The best method of each column is in bold; the other methods "
        "are " + ", ".join(f"`{m}`" for m in quality["methods"]
                          if m not in ("magnitude", "global_magnitude")) + ".",
    ]
    for preset, (method, tasks) in PRESETS.items():
        lines += ["", f"`\"{preset}\"` is `{method}` (docs/benchmarks.json):", ""]
        for i, task in enumerate(tasks):
            lines += ([""] if i else []) + _task_table(quality, task, method)
    lines.append("<!-- presets:end -->")
    return "\n".join(lines)


# ----------------------------------------------------------------- units
def units_block(units: dict) -> str:
    """The `unit-allocation` block: accuracy per allocation and sparsity."""
    recipe, meta = units["recipe"], units["meta"]
    targets = units["sparsities"]
    means = {(a, s): statistics.fmean(r["accuracy"] for r in units["records"]
                                      if r["allocation"] == a and r["sparsity"] == s)
             for a in units["allocations"] for s in targets}
    best = {s: max(round(means[a, s], 3) for a in units["allocations"]) for s in targets}
    lines = [
        "<!-- unit-allocation:start -->",
        f"Measured on the {recipe['model']}: dense model trained "
        f"{recipe['dense_epochs']} epochs, then pruned while fine-tuning "
        f"{recipe['finetune_epochs']} epochs with a `PolynomialDecay` from 0 to the target "
        f"over {recipe['end_step']} steps, masks updated every {recipe['update_every']} "
        f"steps; {recipe['metric']}, mean of {len(units['seeds'])} seeds "
        f"(`{meta['command']}` on {meta['date'][:10]}, docs/unit_allocation.json; "
        f"dense: {statistics.fmean(units['dense']):.3f}):",
        "",
        "| Allocation | " + " | ".join(f"{s:.0%}" for s in targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for a in units["allocations"]:
        cells = []
        for s in targets:
            cell = f"{means[a, s]:.3f}"
            cells.append(f"**{cell}**" if round(means[a, s], 3) == best[s] else cell)
        label = f"`{a}`" + (" (the preset)" if a == UNITS_PRESET else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("<!-- unit-allocation:end -->")
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def render() -> dict:
    """`{start marker: block}` of every block, from the saved results."""
    with open(BENCHMARKS) as f:
        results = json.load(f)
    with open(UNITS) as f:
        units = json.load(f)
    blocks = [presets_block(results["quality"], results["meta"]), units_block(units)]
    return {block.split("\n", 1)[0]: block for block in blocks}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    return update_page(DOC, render().values(), args.check)


if __name__ == "__main__":
    sys.exit(main())
