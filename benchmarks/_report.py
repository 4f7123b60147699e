"""Writing the benchmark results: Markdown tables, PNG plots and JSON.

Everything here works on the plain results dict that `python -m benchmarks`
builds (see `benchmarks/README.md` for its layout); nothing imports Keras,
so the report can be rebuilt from `docs/benchmarks.json` alone:
`write(json.load(open("docs/benchmarks.json")), "docs/BENCHMARKS.md")`.
"""

from __future__ import annotations

import json
import os
import platform
import re

import numpy as np

from tools import cost_tables
from tools import structured_tables

METRIC_FORMATS = {"housing": "{:,.0f}", "pm25": "{:.2f}", "digits": "{:.4f}"}


# --------------------------------------------------------------- machine
def machine_info() -> dict:
    """CPU model, logical cores, memory and OS of this machine."""
    cpu = platform.processor() or platform.machine()
    memory = None
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        memory = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory": memory, "os": platform.platform(),
            "python": platform.python_version()}


# ------------------------------------------------------------- aggregate
def aggregate(records) -> list:
    """Mean, std, min and max of the metric over seeds, per
    (task, framework, method, target); rows sorted the same way."""
    groups = {}
    for r in records:
        groups.setdefault((r["task"], r["framework"], r["method"], r["target"]), []).append(r)
    rows = []
    for (task, framework, method, target), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        metric = np.array([r["metric"] for r in rs], dtype=np.float64)
        sparsity = np.array([r["sparsity"] for r in rs], dtype=np.float64)
        rows.append({"task": task, "framework": framework, "method": method, "target": target,
                     "n": len(rs), "mean": float(metric.mean()), "std": float(metric.std()),
                     "min": float(metric.min()), "max": float(metric.max()),
                     "sparsity": float(sparsity.mean())})
    return rows


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:,.2f}" if seconds < 0.01 else f"{seconds * 1e3:,.1f}"


def _us(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e6:,.1f}"


def _kib(n) -> str:
    return f"{n / 1024:,.1f}"


# -------------------------------------------------------------- sections
def _series_label(framework, method) -> str:
    return f"{framework} {method}"


def _series(quality, rows) -> list:
    """`(framework, method)` pairs: tfmot first, then tfprune's methods in
    the order they were run."""
    order = list(quality.get("methods") or {})
    pairs = {(r["framework"], r["method"]) for r in rows if r["method"] != "dense"}
    return sorted(pairs, key=lambda fm: (fm[0] != "tfmot",
                                         order.index(fm[1]) if fm[1] in order else len(order), fm[1]))


def quality_tables(quality: dict) -> str:
    rows = aggregate(quality["records"])
    targets = [float(s) for s in quality["sparsities"]]
    out = []
    for task, cfg in quality["tasks"].items():
        fmt = METRIC_FORMATS.get(task, "{:.4g}")
        cell = {(r["framework"], r["method"], r["target"]): r for r in rows if r["task"] == task}
        series = _series(quality, cell.values())
        table_rows = []
        for framework in ("tfprune", "tfmot"):
            d = cell.get((framework, "dense", 0.0))
            if d:
                label = "dense (Keras 3, trained)" if framework == "tfprune" else \
                    "dense (same weights in tf_keras)"
                table_rows.append([label, _stat(d, fmt)] + [""] * len(targets))
        for framework, method in series:
            cells = []
            for t in targets:
                r = cell.get((framework, method, t))
                cells.append(_stat(r, fmt) if r else "-")
            table_rows.append([_series_label(framework, method), ""] + cells)
        headers = ["method", "dense"] + [f"{t:.0%}" for t in targets]
        spars = [[_series_label(f, m)] + [
            f"{cell[(f, m, t)]['sparsity']:.3f}" if (f, m, t) in cell else "-" for t in targets]
            for f, m in series]
        n = max((r["n"] for r in cell.values()), default=0)
        out.append(
            f"### {cfg['title']}: {cfg['metric_label']}"
            f" ({'higher' if cfg['metric'] == 'accuracy' else 'lower'} is better)\n\n"
            f"Mean ± std over {n} seed(s) [min – max].\n\n{_table(headers, table_rows)}\n\n"
            f"Achieved sparsity of the kernels (mean over seeds):\n\n"
            f"{_table(['method'] + [f'{t:.0%}' for t in targets], spars)}\n")
    skipped = quality.get("skipped") or {}
    if skipped:
        out.append("Methods not run:\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in skipped.items()))
    methods = quality.get("methods") or {}
    if methods:
        out.append("tfprune methods:\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in methods.items()))
    return "\n\n".join(out)


def _stat(r, fmt) -> str:
    if r["n"] == 1:
        return fmt.format(r["mean"])
    return (f"{fmt.format(r['mean'])} ± {fmt.format(r['std'])} "
            f"[{fmt.format(r['min'])} – {fmt.format(r['max'])}]")


COST_TARGETS = {1: 1.5, 10: None, 50: 1.10, 100: 1.10, "constant": 1.05}


def _order(every):
    return (1, 0) if every == "constant" else (0, every)


def cost_table(cost: dict) -> str:
    rows = []
    records = sorted(cost["records"], key=lambda r: (r["task"], _order(r.get("every", 0)),
                                                     r["framework"] != "tfprune"))
    for r in records:
        every = r.get("every", "")
        target = ""
        limit = COST_TARGETS.get(every)
        if r["framework"] == "tfprune" and limit is not None:
            target = f"<= {limit:.2f} ({'met' if r['ratio'] <= limit else 'missed'})"
        rows.append([r["task"], every, r["framework"], r["steps_per_epoch"],
                     f"{np.median(r['dense_epoch_s']):.3f}", f"{np.median(r['pruned_epoch_s']):.3f}",
                     f"**{r['ratio']:.2f}**", target, len(r["pruned_epoch_s"])])
    headers = ["task", "every", "framework", "steps/epoch", "unpruned s/epoch", "pruned s/epoch",
               "ratio", "target", "epochs timed"]
    text = _table(headers, rows)
    layers = cost.get("layers")
    if layers:
        text += (
            f"\n\nMany layers: {layers['model']}, {layers['pruned_layers']} pruned layers. One "
            f"update of every mask: {_ms(layers['update_all_s'])} ms; of one layer alone: "
            f"{_ms(layers['update_one_layer_s'])} ms "
            f"({layers['update_all_s'] / layers['update_one_layer_s']:.1f}x; target <= 10x). "
            f"Pruned/unpruned fit with updates every {layers['every']} steps: "
            f"**{layers['ratio']:.2f}** (target <= 1.05; median of "
            f"{len(layers['pruned_epoch_s'])} epochs of {layers['steps_per_epoch']} steps).")
    return text


def update_table(update: dict) -> str:
    by_size = {}
    for r in update["records"]:
        by_size.setdefault(r["size"], {})[(r["framework"], r["mode"])] = r
    modes = [("tfprune", "prune_to"), ("tfprune", "callback"), ("tfprune", "global"),
             ("tfprune", "2:4"), ("tfprune", "units"), ("tfprune", "unchanged"),
             ("tfmot", "eager"), ("tfmot", "tf.function")]
    present = [m for m in modes if any(m in v for v in by_size.values())]
    rows = []
    for size, runs in sorted(by_size.items()):
        n = next(iter(runs.values()))["n_weights"]
        rows.append([f"{n:,}"] + [_ms(runs[m]["median_s"]) if m in runs else "n/a" for m in present])
    headers = ["prunable weights"] + [f"{f} {m} (ms)" for f, m in present]
    return _table(headers, rows)


def artifacts_table(artifacts: dict) -> str:
    rows = []
    for f in artifacts["files"]:
        latency = f.get("latency_s") or {}
        rows.append([f["framework"], f["variant"], f["format"], f["quantize"] or "float32",
                     _kib(f["bytes"]), _kib(f["gzip_bytes"]),
                     f.get("sparse_tensors", "") if f["format"] == "tflite" else "",
                     _us(latency.get("AUTO")) if f["format"] == "tflite" else "",
                     _us(latency.get("BUILTIN_WITHOUT_DEFAULT_DELEGATES"))
                     if f["format"] == "tflite" else ""])
    headers = ["framework", "variant", "format", "weights", "size (KiB)", "gzip -9 (KiB)",
               "sparse tensors", "LiteRT µs (XNNPACK)", "LiteRT µs (builtin)"]
    metrics = [[r["framework"], r["method"], f"{r['metric']:.4f}", f"{r['sparsity']:.3f}"]
               for r in artifacts["records"]]
    notes = "\n".join(f"- `{k}`: {v}" for k, v in artifacts.get("notes", {}).items())
    text = (f"{_table(headers, rows)}\n\nKeras models behind the files:\n\n"
            f"{_table(['framework', 'variant', artifacts.get('metric', 'metric'), 'kernel sparsity'], metrics)}"
            f"\n\n{notes}")
    if artifacts.get("export_modes"):
        text += ("\n\n### Every tfprune export mode (`benchmarks/export_sizes.py`)\n\n"
                 "Synthetic-data models, one-shot magnitude pruning; tfprune only.\n\n"
                 + re.sub(r"^### ", "#### ", artifacts["export_modes"], flags=re.M))
    return text


# ----------------------------------------------------------------- plots
def plot_quality(quality: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = aggregate(quality["records"])
    tasks = list(quality["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        cfg = quality["tasks"][task]
        mine = [r for r in rows if r["task"] == task]
        for r in mine:
            if r["method"] == "dense" and r["framework"] == "tfprune":
                ax.axhline(r["mean"], color="gray", linestyle="--", label="dense")
        series = _series(quality, mine)
        for framework, method in series:
            pts = sorted((r["target"], r["mean"], r["std"]) for r in mine
                         if (r["framework"], r["method"]) == (framework, method))
            x, y, e = (np.array(v) for v in zip(*pts))
            style = dict(linestyle=":", marker="s") if framework == "tfmot" else dict(marker="o")
            ax.errorbar(x * 100, y, yerr=e, capsize=3, label=_series_label(framework, method), **style)
        ax.set_title(cfg["title"], fontsize=10)
        ax.set_xlabel("target sparsity (%)")
        ax.set_ylabel(cfg["metric_label"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_artifacts(artifacts: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = [f for f in artifacts["files"] if f["format"] == "tflite"]
    labels = [f"{f['framework']}\n{f['variant']}\n{f['quantize'] or 'float32'}" for f in files]
    x = np.arange(len(files))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.2))
    a1.bar(x - 0.2, [f["bytes"] / 1024 for f in files], 0.4, label="raw")
    a1.bar(x + 0.2, [f["gzip_bytes"] / 1024 for f in files], 0.4, label="gzip -9")
    a1.set_ylabel("TFLite size (KiB)")
    lat = [(f.get("latency_s") or {}) for f in files]
    a2.bar(x - 0.2, [(v.get("AUTO") or 0) * 1e6 for v in lat], 0.4, label="XNNPACK")
    a2.bar(x + 0.2, [(v.get("BUILTIN_WITHOUT_DEFAULT_DELEGATES") or 0) * 1e6 for v in lat], 0.4,
           label="builtin kernels")
    a2.set_ylabel("LiteRT latency, batch 1 (µs)")
    for ax in (a1, a2):
        ax.set_xticks(x, labels, fontsize=7)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- output
def _repeated_cost() -> list:
    """The section of `python -m benchmarks.cost`'s saved output, if any."""
    block = cost_tables.load_block()
    if block is None:
        return []
    return ["## 2b. Training cost over repeated processes\n",
            "Measured by `python -m benchmarks.cost` (docs/cost.json), not by this command: "
            "the single-process ratios of section 2 move by 15-25% from run to run here, "
            "these give the median and range over repeats.\n",
            block + "\n"]


def markdown(results: dict, images: dict) -> str:
    meta = results["meta"]
    machine, versions = meta["machine"], meta["versions"]
    version_rows = [[k, versions.get("tfprune_side", {}).get(k, ""), versions.get("tfmot_side", {}).get(k, "")]
                    for k in ("python", "tensorflow", "keras", "tf_keras", "tfprune", "tfmot", "numpy")]
    parts = [
        "# Benchmarks: tfprune (Keras 3) vs tfmot (tf_keras)\n",
        f"Mode: **{'quick smoke run (not for publication)' if meta['quick'] else 'full run'}**, "
        f"generated {meta['date']} in {meta['seconds'] / 60:.1f} min.\n",
        "## Setup\n",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']}, {machine['os']}",
        f"- tfmot side: {meta['tfmot']}\n",
        _table(["package", "tfprune process", "tfmot process"], version_rows) + "\n",
        "Commands:\n\n```\n" + "\n".join(meta["commands"]) + "\n```\n",
    ]
    for again in meta.get("remeasured", []):
        parts.append(f"Re-measured on {again['date']} with `{again['command']}`: "
                     f"{', '.join(again['sections'])}.\n")
    sections = [("quality", "1. Quality after pruning", quality_tables),
                ("cost", "2. Training cost: pruned fit / unpruned fit", cost_table),
                ("update", "3. Mask update cost (one update of every mask)", update_table),
                ("artifacts", "4. Artifacts: size and LiteRT latency", artifacts_table)]
    for key, title, render in sections:
        if key == "update":  # after section 2, measured or not
            parts += _repeated_cost()
        if key not in results:
            continue
        section = results[key]
        parts.append(f"## {title}\n")
        if section.get("about"):
            parts.append(section["about"] + "\n")
        if section.get("error"):
            parts.append(f"> {section['error']}\n")
        parts.append(render(section) + "\n")
        if key in images:
            parts.append(f"![{title}]({images[key]})\n")
    structured = structured_tables.load_block()
    if structured is not None:
        parts.append("## 5. Structured pruning: channels removed from real CNNs\n")
        parts.append(
            "Measured by `python -m benchmarks.structured` (docs/structured.json), not by "
            "this command; copied here so that every benchmark is on one page.\n"
        )
        parts.append(structured + "\n")
    return "\n".join(parts)


def write(results: dict, out: str, json_path: str | None, img_dir: str | None) -> str:
    """Writes the Markdown report (and JSON, plots); returns the Markdown."""
    images = {}
    if img_dir:
        os.makedirs(img_dir, exist_ok=True)
        rel = os.path.relpath(img_dir, os.path.dirname(os.path.abspath(out)) or ".")
        for key, plot, name in (("quality", plot_quality, "bench_quality.png"),
                                ("artifacts", plot_artifacts, "bench_artifacts.png")):
            if key in results and not results[key].get("error"):
                plot(results[key], os.path.join(img_dir, name))
                images[key] = f"{rel}/{name}"
    text = markdown(results, images)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    return text
