"""Writes the one-shot tables of docs/oneshot.md and README.md from
docs/oneshot.json.

Every figure between the `<!-- oneshot:start -->` and `<!-- oneshot:end -->`
markers of docs/oneshot.md, and between `<!-- oneshot-readme:start -->` and
`<!-- oneshot-readme:end -->` in README.md, is rendered here from the saved
output of `python -m benchmarks.oneshot`; `tests/oneshot/test_oneshot_docs.py`
fails when a page and the JSON disagree. Run from the repository root:

    python tools/oneshot_tables.py            # rewrite the blocks
    python tools/oneshot_tables.py --check    # exit 1 if a page is stale
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
JSON = os.path.join(ROOT, "docs", "oneshot.json")
DOC, README = os.path.join(ROOT, "docs", "oneshot.md"), os.path.join(ROOT, "README.md")
NAMES = {"magnitude": "magnitude", "wanda": "Wanda", "sparsegpt": "SparseGPT"}


def _spread(values, fmt) -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.mean(values))} [{fmt(min(values))}–{fmt(max(values))}]"


def _loss(x) -> str:
    return f"{x:.3f}"


def _find(records, pattern, method):
    return next(r for r in records if r["pattern"] == pattern and r["method"] == method)


def shakespeare(part: dict) -> list:
    c, records = part["config"], part["records"]
    patterns = list(dict.fromkeys(r["pattern"] for r in records))
    rows = ["| pattern | magnitude | Wanda | SparseGPT | magnitude, fine-tuned | Wanda, "
            "fine-tuned | SparseGPT, fine-tuned |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in patterns:
        cells = [_spread(_find(records, p, m)["losses"], _loss) for m in NAMES]
        cells += [_loss(_find(records, p, m)["finetuned"]) for m in NAMES]
        best = min(range(3), key=lambda i: statistics.mean(_find(records, p,
                                                                 list(NAMES)[i])["losses"]))
        cells[best] = f"**{cells[best]}**"
        rows.append(f"| {p} | " + " | ".join(cells) + " |")
    seeds = len(c["calibration_seeds"])
    note = (
        f"Validation loss (nats per character, {c['val_windows']} fixed windows) of the "
        f"character GPT of `examples/_char_gpt.py` ({c['layers']} blocks x {c['heads']} heads "
        f"x {c['dim']}, {c['parameters']:,} parameters) trained {c['steps']:,} steps on tiny "
        f"Shakespeare: dense **{part['dense']:.3f}**, and {part['dense_finetuned']:.3f} after "
        f"{c['finetune_steps']} more steps at the fine-tuning learning rate. Every kernel of "
        f"the transformer blocks pruned in one shot from {c['calibration_windows']} training "
        f"windows of {c['context']} characters (embeddings and output head dense); Wanda and "
        f"SparseGPT: mean [min–max] over {seeds} calibration sets (magnitude needs none). "
        f"Fine-tuned: {c['finetune_steps']} steps (AdamW, learning rate "
        f"{c['finetune_lr']:g}) with the masks kept, from the first calibration set. "
        f"{_run(part)}"
    )
    return rows + ["", note]


def _metric(task: dict):
    if task["metric"] == "accuracy":
        return lambda x: f"{x:.4f}"
    return lambda x: f"{x:,.0f}"


def small(part: dict) -> list:
    methods = ["training-time magnitude", "one-shot magnitude", "one-shot wanda",
               "one-shot sparsegpt", "one-shot sparsegpt + fine-tuning"]
    rows = ["| task | sparsity | dense | training-time magnitude | one-shot magnitude | "
            "one-shot Wanda | one-shot SparseGPT | one-shot SparseGPT + fine-tuning |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, task in part["tasks"].items():
        fmt = _metric(task)
        records = [r for r in part["records"] if r["task"] == name]
        dense = _spread([r["metric"] for r in records if r["method"] == "dense"], fmt)
        for sparsity in sorted({r["target"] for r in records if r["method"] != "dense"}):
            cells = [_spread([r["metric"] for r in records
                              if r["method"] == m and r["target"] == sparsity], fmt)
                     for m in methods]
            rows.append(f"| {task['title']}, {task['metric_label']} | {sparsity:.0%} | {dense} | "
                        + " | ".join(cells) + " |")
    note = (
        f"Mean [min–max] over seeds {part['seeds']} (`benchmarks/_models.py`: same data, "
        "recipe and dense weights as the benchmark suite). Every kernel pruned, the output "
        "head too. Training-time: `tfprune.prune` while fine-tuning from the dense weights "
        "(cubic schedule); one-shot: from the dense weights, "
        f"{part['calibration_rows']} training rows, no training; + fine-tuning: the one-shot "
        "SparseGPT model trained as many epochs as the training-time run, masks kept. "
        f"{_run(part)}"
    )
    return rows + ["", note]


def _mb(n) -> str:
    return f"{n / 2**20:,.0f}"


def speed(part: dict) -> list:
    records = part["records"]
    runs = [("wanda", False, "Wanda 50%, in place"), ("sparsegpt", False, "SparseGPT 50%, in place"),
            ("sparsegpt", True, "SparseGPT 50%, wrapped copy (the default)"),
            ("gptq", False, "Keras GPTQ, 4 bits, groups of 128")]
    gptq = statistics.median(r["seconds"] for r in records if r["method"] == "gptq")
    rows = ["| method | wall time (s) | / GPTQ's | peak memory over the loaded model (MB) |",
            "| --- | --- | --- | --- |"]
    for method, wrapped, label in runs:
        mine = [r for r in records if r["method"] == method and r["wrapped"] == wrapped]
        if not mine:
            continue
        seconds = [r["seconds"] for r in mine]
        rows.append(f"| {label} | {_spread_median(seconds)} | "
                    f"{statistics.median(seconds) / gptq:.2f} | "
                    f"{_spread_median([r['peak_over_before'] for r in mine], _mb)} |")
    first = records[0]
    statistics_bytes = max(r.get("statistics_bytes", 0) for r in records)
    rounds = len({r["round"] for r in records})
    note = (
        f"keras_hub `GPT2CausalLM` of GPT-2 small's shape ({first['parameters'] / 1e6:.1f}M "
        f"parameters, {_mb(first['weights_bytes'])} MB of weights; random weights), "
        f"{part['sequences']} calibration sequences of {part['length']} tokens. Each run in a "
        f"process of its own, methods alternated, {rounds} rounds: median [min–max]. Peak "
        "memory: the highest resident memory during the call, sampled every 10 ms, minus "
        "the resident memory before it (model built and run once). The largest statistics "
        f"one-shot pruning held at once (one block, with its dense kernels for the error "
        f"report): {_mb(statistics_bytes)} MB. {_run(part)}"
    )
    return rows + ["", note]


def _spread_median(values, fmt=lambda x: f"{x:.1f}") -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}–{fmt(max(values))}]"


def _run(part: dict) -> str:
    m = part["machine"]
    return (f"Measured by `{part['command']}` on {part['date']} ({m.get('cpu', 'CPU')}, "
            f"{m.get('cores', '?')} cores; TensorFlow {part['versions']['tensorflow']}, Keras "
            f"{part['versions']['keras']}).")


def render(results: dict) -> str:
    """The docs/oneshot.md block (markers included)."""
    block = ["<!-- oneshot:start -->", ""]
    for key, title, fn in (("shakespeare", "Tiny Shakespeare, character GPT", shakespeare),
                           ("small", "Small models: one-shot vs training-time pruning", small),
                           ("speed", "Speed and memory: GPT-2 small", speed)):
        if key in results:
            block += [f"### {title}", "", *fn(results[key]), ""]
    return "\n".join(block + ["<!-- oneshot:end -->"])


def render_readme(results: dict) -> str:
    """The README block (markers included): the headline figures."""
    part = results["shakespeare"]
    rows = ["| tiny Shakespeare char GPT, validation loss | magnitude | Wanda | SparseGPT |",
            "| --- | --- | --- | --- |",
            f"| dense | {part['dense']:.3f} | | |"]
    for p in ("50%", "2:4"):
        cells = [_loss(statistics.mean(_find(part["records"], p, m)["losses"])) for m in NAMES]
        rows.append(f"| {p}, one shot | " + " | ".join(cells) + " |")
        cells = [_loss(_find(part["records"], p, m)["finetuned"]) for m in NAMES]
        rows.append(f"| {p}, one shot + {part['config']['finetune_steps']} steps | "
                    + " | ".join(cells) + " |")
    lines = ["<!-- oneshot-readme:start -->", "", *rows, ""]
    if "speed" in results:
        records = results["speed"]["records"]

        def median(method):
            return statistics.median(r["seconds"] for r in records
                                     if r["method"] == method and not r["wrapped"])

        part, first = results["speed"], records[0]
        lines += [f"On a GPT-2-small-sized keras_hub model ({first['parameters'] / 1e6:.0f}M "
                  f"parameters, {part['sequences']} sequences of {part['length']} tokens, "
                  f"{part['machine']['cores']} cores), SparseGPT took {median('sparsegpt'):.0f} s "
                  f"and Wanda {median('wanda'):.0f} s, against {median('gptq'):.0f} s for Keras' "
                  "own GPTQ on the same model and data.", ""]
    return "\n".join(lines + ["<!-- oneshot-readme:end -->"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = parser.parse_args(argv)
    with open(JSON) as f:
        results = json.load(f)
    return max(update_page(DOC, [render(results)], args.check),
               update_page(README, [render_readme(results)], args.check))


if __name__ == "__main__":
    sys.exit(main())
