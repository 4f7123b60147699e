"""Writes the training-cost tables of README.md and docs/BENCHMARKS.md
from docs/cost.json.

Every figure between the `<!-- cost:start -->` and `<!-- cost:end -->`
markers of both pages is rendered here from the saved output of
`python -m benchmarks.cost` (`python -m benchmarks` writes the same block
into docs/BENCHMARKS.md when it regenerates it); `tests/project/test_docs.py`
fails when a page and the JSON disagree. Run from the repository root:

    python tools/cost_tables.py            # rewrite the blocks
    python tools/cost_tables.py --check    # exit 1 if a page is stale
"""

from __future__ import annotations

import os
import sys

try:  # imported as `tools.<name>` (tests), or run as a script from tools/
    from tools._blocks import render_pages
    from tools._blocks import saved_block
except ImportError:
    from _blocks import render_pages
    from _blocks import saved_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, name) for name in ("README.md", os.path.join("docs", "BENCHMARKS.md"))]
JSON = os.path.join(ROOT, "docs", "cost.json")
START, END = "<!-- cost:start -->", "<!-- cost:end -->"


def _setting(every) -> str:
    return "constant masks" if every == "constant" else f"every {every} steps" if every != 1 \
        else "every step"


def _ratio(summary) -> str:
    if summary is None:
        return "-"
    return f"{summary['median']:.2f} [{summary['min']:.2f}-{summary['max']:.2f}]"


def _verdict(mine, theirs) -> str:
    """Which tool's ratio is lower where the ranges over the repeats do
    not overlap."""
    if mine is None or theirs is None:
        return "-"
    if min(mine["n"], theirs["n"]) < 3:
        return "undecided (fewer than 3 repeats)"
    if mine["max"] < theirs["min"]:
        return "tfprune lower"
    if theirs["max"] < mine["min"]:
        return "tfmot lower"
    return "undecided (ranges overlap)"


def table(result: dict) -> str:
    """The Markdown table: per task and setting, pruned/plain of each tool
    as median [min-max] over the repeats, and which is lower."""
    rows = {(r["task"], r["every"], r["framework"]): r for r in result["summary"]}
    lines = ["| task | masks | tfprune pruned/plain | tfmot pruned/plain | lower |",
             "| --- | --- | --- | --- | --- |"]
    for task, title in result["tasks"].items():
        for every in result["settings"]:
            mine = rows.get((task, every, "tfprune"))
            theirs = rows.get((task, every, "tfmot"))
            lines.append(f"| {title} | {_setting(every)} | "
                         f"{_ratio(mine and mine['ratio'])} | {_ratio(theirs and theirs['ratio'])} "
                         f"| {_verdict(mine and mine['ratio'], theirs and theirs['ratio'])} |")
    plain = []
    for task in result["tasks"]:
        by_tool = {t: rows.get((task, result["settings"][0], t)) for t in ("tfprune", "tfmot")}
        cells = [f"{tool} {r['plain_epoch_s'] * 1e3:,.0f} ms" for tool, r in by_tool.items() if r]
        plain.append(f"{task}: " + ", ".join(cells))
    lines.append("")
    lines.append("Unpruned epoch, median (Keras 3 under tfprune, tf_keras under tfmot): "
                 + "; ".join(plain) + ".")
    return "\n".join(lines)


def render(result: dict) -> str:
    """The block both pages hold."""
    repeats = result["repeats"]
    job = result["job"]
    return "\n".join([
        START,
        f"Training cost, measured by `{result['command']}` on {result['date']} "
        f"({result['cpus']}-core CPU, tfprune {result['tfprune']} at {result['commit']}): "
        f"{repeats} repeats, each a fresh process per tool and task, the tools alternating "
        f"which goes first; in each process pruned and unpruned fits alternate "
        f"{job['rounds']} times ({job['epochs']} timed epochs each). Pruned/plain epoch "
        "time, median over the repeats [min-max]; a difference is decided only where the "
        "ranges do not overlap.",
        "",
        table(result),
        END,
    ])


def load_block(path: str = JSON) -> str | None:
    """The rendered block of the saved results, or None if there are none."""
    return saved_block(path, render)


def main(argv=None) -> int:
    return render_pages(argv, __doc__.split("\n\n")[0], JSON, render, PAGES)


if __name__ == "__main__":
    sys.exit(main())
