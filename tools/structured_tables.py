"""Writes the "Real CNNs" tables of docs/shrink.md and docs/BENCHMARKS.md
from docs/structured.json.

Every figure between the `<!-- structured:start -->` and
`<!-- structured:end -->` markers of both pages is rendered here from the
saved output of `python -m benchmarks.structured` (`python -m benchmarks`
writes the same block into docs/BENCHMARKS.md when it regenerates it);
`tests/shrink/test_structured_docs.py` fails when a page and the JSON
disagree. Run from the repository root:

    python tools/structured_tables.py            # rewrite the block
    python tools/structured_tables.py --check    # exit 1 if it is stale
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
PAGES = [os.path.join(ROOT, "docs", name) for name in ("shrink.md", "BENCHMARKS.md")]
JSON = os.path.join(ROOT, "docs", "structured.json")
START, END = "<!-- structured:start -->", "<!-- structured:end -->"


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:,.0f}"


def _pair(before, after, fmt=_count) -> str:
    return f"{fmt(before)} -> {fmt(after)} ({after / before:.2f}x)"


def render(results: dict) -> str:
    """The markdown block (markers included) for `results`."""
    config, machine = results["config"], results["machine"]
    h, w, _ = config["input_shape"]
    rows = [
        "| model | parameters | MACs | channels | LiteRT latency "
        "| max abs diff, shrunk vs pruned |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["records"]:
        (p0, p1), (m0, m1), (c0, c1) = r["params"], r["macs"], r["channels"]
        t0, t1 = r["latency_ms"]
        rows.append(
            f"| {r['model']} | {_pair(p0, p1)} | {_pair(m0, m1)} | {c0:,} -> {c1:,} | "
            f"{t0:.2f} -> {t1:.2f} ms ({t0 / t1:.2f}x faster) | "
            f"{r['max_abs_diff']:.1e} (largest logit {r['max_abs_output']:.2f}) |"
        )
    note = (
        f"{h}x{w}x3 inputs, {config['classes']} classes, {config['sparsity']:.0%} of the "
        f"channels of every layer pruned with `{config['strategy']}`; weights: "
        f"{config['weights']}. Latency: {config['latency']}, on {machine['cpu']} "
        f"({machine['cores']} cores, shared), {results['date']}. MACs: Conv, DepthwiseConv "
        "and Dense calls, one image. Written by `python -m benchmarks.structured` to "
        "`docs/structured.json`; rendered by `python tools/structured_tables.py`."
    )
    block = [START, "", *rows, "", note, ""]
    if "digits" in results:
        block += [_digits(results["digits"]), ""]
    return "\n".join(block + [END])


def _digits(d: dict) -> str:
    r, acc = d["recipe"], d["accuracy"]
    (m0, m1), (p0, p1), (c0, c1), (t0, t1) = d["macs"], d["params"], d["channels"], \
        d["latency_ms"]
    rows = [
        "| digits ResNet-style CNN | dense | pruned to half its channels, shrunk |",
        "| --- | --- | --- |",
        f"| test accuracy ({d['test_samples']} images) | {acc['dense']:.4f} | "
        f"{acc['shrunk']:.4f} ({acc['shrunk'] - acc['dense']:+.4f}) |",
        f"| MACs | {_count(m0)} | {_count(m1)} ({m0 / m1:.2f}x fewer) |",
        f"| parameters | {_count(p0)} | {_count(p1)} |",
        f"| channels (Conv and Dense units) | {c0:,} | {c1:,} |",
        f"| LiteRT latency, float32, 1 thread | {t0 * 1e3:.1f} us | {t1 * 1e3:.1f} us "
        f"({t0 / t1:.2f}x faster) |",
        f"| max abs diff of the logits, shrunk vs pruned | | {d['max_abs_diff']:.1e} "
        f"(largest logit {d['max_abs_output']:.1f}) |",
    ]
    note = (
        f"On real data: the 8x8 digits (`examples.datasets.load_digits`), a CNN of two "
        f"residual stages of 3x3 convolutions ({r['width']} then {2 * r['width']} channels) "
        f"trained dense for {r['dense_epochs']} epochs, then pruned with the same strategy "
        f"while fine-tuning {r['finetune_epochs']} epochs (`PolynomialDecay` from 0 to 50% "
        f"over {r['ramp_epochs']} epochs, masks updated every {r['update_every']} steps), "
        f"stripped and shrunk. Latency: median of {d['latency_runs']} invocations, median of "
        "3 rounds."
    )
    return "\n".join(rows + ["", note])


def load_block(path: str = JSON) -> str | None:
    """The rendered block of the saved results, or None if there are none."""
    return saved_block(path, render)


def main(argv=None) -> int:
    return render_pages(argv, __doc__.split("\n\n")[0], JSON, render, PAGES)


if __name__ == "__main__":
    sys.exit(main())
