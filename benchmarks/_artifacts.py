"""Artifacts of a pruned model: file sizes (tfprune side) and LiteRT latency.

tfprune's exports go through `tfprune.export` (verified SavedModel and
TFLite; `shrink=True` for the shrunk variant). The tfmot worker writes its
own files with the standard tfmot flow; `latency` then times every
`.tflite` file of both frameworks in the same LiteRT runtime.
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np

import tfprune
import tfprune.export
from benchmarks import _models
from benchmarks import _tfprune_side as side
from benchmarks._models import log


def _variants(cfg, data, weights, sparsity, seed, methods) -> list:
    """`(variant, keras model, shrink, note)` for dense, sparse and shrunk."""
    by_name = {m.name: m for m in methods}
    dense = side._model(cfg, data, weights)
    sparse = side.finetune(cfg, data, weights, by_name["magnitude"], sparsity, seed)
    if "units" in by_name:
        shrunk = side.finetune(cfg, data, weights, by_name["units"], sparsity, seed)
        note = f"units pruned to {sparsity:.0%} (L2 norm), then shrunk"
    else:
        shrunk = sparse
        note = "magnitude-pruned model shrunk (no unit pruning in this tfprune)"
    return [("dense", dense, False, "the dense model"),
            ("sparse", sparse, False, f"magnitude, per layer, {sparsity:.0%}"),
            ("shrunk", shrunk, True, note)]


def export(cfg, data, weights, sparsity: float, seed: int, out_dir: str, methods) -> dict:
    """Exports dense, sparse and shrunk variants with `tfprune.export`.

    Returns `{"records": [...], "files": [...], "notes": {...}}`; each file
    has its variant, format, quantization, path, sizes and the number of
    tensors stored sparse."""
    records, files, notes = [], [], {}
    for variant, model, shrink, note in _variants(cfg, data, weights, sparsity, seed, methods):
        notes[variant] = note
        rec = side._record(cfg, data, model, seed, variant, 0.0 if variant == "dense" else sparsity,
                           0.0)
        records.append(rec)
        sample = data.x_test[:16]
        path = os.path.join(out_dir, f"tfprune_{variant}_saved_model")
        result = tfprune.export.saved_model(model, path, shrink=shrink, sample_inputs=sample)
        files.append(_file(variant, "saved_model", None, path, result))
        for quantize in (None, "dynamic"):
            path = os.path.join(out_dir, f"tfprune_{variant}_{quantize or 'float32'}.tflite")
            result = tfprune.export.tflite(model, path, quantize=quantize, sparse=variant != "dense",
                                           shrink=shrink, sample_inputs=sample)
            files.append(_file(variant, "tflite", quantize, path, result))
        log(f"  [tfprune] artifacts {variant}: {cfg.metric}={rec['metric']:.4g}, "
            + ", ".join(f"{f['format']}/{f['quantize'] or 'float32'} {f['bytes']:,} B"
                        for f in files if f["variant"] == variant))
        keras.backend.clear_session(free_memory=False)
    return {"records": records, "files": files, "notes": notes}


def _file(variant, fmt, quantize, path, result) -> dict:
    return {"variant": variant, "format": fmt, "quantize": quantize, "path": path,
            **_models.file_sizes(path), "resolver": result.resolver}


def latency(path: str, runs: int, resolver: str = "AUTO", threads: int = 1) -> float:
    """Median wall time (seconds) of one LiteRT `invoke` on a batch of 1.

    Args:
        path: the `.tflite` file.
        runs: timed invocations (after 20 warm-up ones).
        resolver: "AUTO" (builtin kernels with XNNPACK) or
            "BUILTIN_WITHOUT_DEFAULT_DELEGATES" (builtin kernels alone).
        threads: interpreter threads.
    """
    from ai_edge_litert import interpreter as lib

    interpreter = lib.Interpreter(model_path=path, num_threads=threads,
                                  experimental_op_resolver_type=lib.OpResolverType[resolver])
    for detail in interpreter.get_input_details():
        shape = [1 if d in (-1, None) else d for d in detail["shape_signature"]]
        shape[0] = 1
        interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        value = rng.standard_normal(detail["shape"]).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value)
    for _ in range(20):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return _models.median(times)


def add_runtime_info(files, runs: int) -> None:
    """Adds `latency_s` (per resolver) and `sparse_tensors` (read back with
    `tfprune.export.inspect`, the same way for both frameworks) to every
    `.tflite` entry of `files`."""
    for entry in files:
        if entry["format"] != "tflite":
            continue
        tensors = tfprune.export.inspect(entry["path"]).tensors
        entry["sparse_tensors"] = sum(t["storage"].startswith("sparse") for t in tensors)
        entry["latency_s"] = {}
        for resolver in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            try:
                entry["latency_s"][resolver] = latency(entry["path"], runs, resolver)
            except (RuntimeError, ValueError) as e:  # a resolver that cannot run the file
                entry["latency_s"][resolver] = None
                entry.setdefault("errors", []).append(f"{resolver}: {str(e).splitlines()[0]}")
