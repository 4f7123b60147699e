"""Helpers shared by the examples: tables, file sizes, JSON, plots and LiteRT latency."""

from __future__ import annotations

import gzip
import io
import json
import os
import statistics
import tarfile
import time

import numpy as np


def format_table(headers, rows, right=None) -> str:
    """An aligned plain-text table; `right` lists right-aligned columns
    (default: every column but the first)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = set(range(1, len(headers))) if right is None else set(right)

    def line(row):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def file_sizes(path) -> tuple:
    """`(raw, gzipped)` size in bytes of a file, or of a folder's files
    (a folder is gzipped as one tar archive)."""
    if os.path.isdir(path):
        raw = sum(
            os.path.getsize(os.path.join(root, f))
            for root, _, files in os.walk(path)
            for f in files
        )
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=os.path.basename(path))
        data = buffer.getvalue()
    else:
        raw = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read()
    return raw, len(gzip.compress(data, compresslevel=9, mtime=0))


def kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_json(path, obj) -> None:
    """Writes `obj` (NumPy values allowed) as indented JSON."""
    with open(path, "w") as f:
        json.dump(_plain(obj), f, indent=2)
        f.write("\n")


PLOT_INSTALL = "pip install 'tfprune[plot]'"


def plot_sparsity_and_metric(
    path,
    sparsity,
    metric,
    metric_label,
    phases,
    title,
    sparsity_label="sparsity of the pruned weights",
) -> str | None:
    """Saves a PNG with a metric per epoch (left axis) and the sparsity per
    epoch (right axis); `phases` is a list of `(label, first_epoch)` whose
    boundaries are drawn as vertical lines.

    Plotting needs matplotlib (the `plot` extra). Without it nothing is
    written and a line says how to install it; the example goes on.

    Returns:
        `path`, or `None` when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        print(
            f"matplotlib is not installed: skipped the plot {os.path.basename(path)}. "
            f"Install it with `{PLOT_INSTALL}` (or `pip install matplotlib`)."
        )
        return None

    epochs = np.arange(1, len(metric) + 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(epochs, metric, "o-", color="tab:blue", markersize=3, label=metric_label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_label, color="tab:blue")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(epochs, sparsity, "s-", color="tab:red", markersize=3, label="sparsity")
    ax2.set_ylabel(sparsity_label, color="tab:red")
    ax2.set_ylim(-0.02, 1.02)
    for label, first in phases:
        ax.axvline(first - 0.5, color="gray", linestyle="--", linewidth=1)
        ax.text(first - 0.4, 0.98, label, transform=ax.get_xaxis_transform(), va="top", fontsize=9)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def written(plot_path, *names) -> str:
    """`names` and the plot's file name (if it was drawn), comma-separated,
    for an example's closing "wrote ..." line."""
    drawn = [os.path.basename(plot_path)] if plot_path else []
    return ", ".join([*names, *drawn])


def save_plain(model, path) -> str:
    """Saves `model` as `.keras` without optimizer state, for fair sizes;
    returns `path`."""
    import keras

    if getattr(model, "optimizer", None) is not None:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        model = copy
    model.save(path)
    return path


def litert_latency(path, resolver, sample, runs=1000, warmup=20) -> float:
    """Median microseconds of one LiteRT invocation on `sample` (one thread).

    `resolver` is the `OpResolverType` name the exporter verified the file
    with (`ExportResult.resolver`); `sample` holds one input row."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(
        model_path=str(path),
        num_threads=1,
        experimental_op_resolver_type=OpResolverType[resolver],
    )
    runner = interpreter.get_signature_runner()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    for _ in range(warmup):
        runner(input_0=sample)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(input_0=sample)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


class Timer:
    """Wall-clock seconds since creation: `Timer().elapsed()`."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
