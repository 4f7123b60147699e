"""`tfprune.export.inspect`: what is inside a `.keras`, SavedModel or `.tflite`."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfprune._base import keras_internals
from tfprune._base.validation import received
from tfprune.export import _atomic
from tfprune.export import _flatbuffer


@dataclasses.dataclass(frozen=True)
class Inspection:
    """Per-tensor sparsity and sizes of a saved model; prints as a table.

    Attributes:
        kind: `"keras"`, `"saved_model"` or `"tflite"`.
        path: the inspected file or directory.
        bytes: size on disk.
        gzip_bytes: compressed size (`gzip_method` says how).
        gzip_method: how `gzip_bytes` was measured.
        tensors: one dict per tensor with keys `name`, `shape`, `dtype`,
            `storage` ("dense", "sparse", "sparse 1x4 blocks", ...), `bytes`
            (as stored), `size` (number of values), `zeros` and `sparsity`.
            Keras files list the prunable tensors; SavedModels the variables
            with two or more dimensions; TFLite files the constant tensors
            with two or more dimensions (weights, not biases or shapes).
        ops: operator names of a TFLite file (empty otherwise).
        inputs: `(name, shape, dtype)` of each input of the serving
            signature (-1 or None: any size).
        outputs: the same for the outputs.
    """

    kind: str
    path: str
    bytes: int
    gzip_bytes: int
    gzip_method: str
    tensors: tuple
    ops: tuple = ()
    inputs: tuple = ()
    outputs: tuple = ()

    @property
    def sparsity(self) -> float:
        """Zeros over values, over the listed tensors."""
        size = sum(t["size"] for t in self.tensors)
        return sum(t["zeros"] or 0 for t in self.tensors) / size if size else 0.0

    def __str__(self) -> str:
        title = {"keras": "Keras file", "saved_model": "SavedModel", "tflite": "TFLite file"}[self.kind]
        lines = [
            f"{title} {self.path}",
            f"size: {self.bytes:,} bytes ({self.gzip_bytes:,} as {self.gzip_method})",
        ]
        for label, items in (("inputs", self.inputs), ("outputs", self.outputs)):
            if items:
                text = ", ".join(f"{n} {tuple(s)} {d}" for n, s, d in items)
                lines.append(f"{label}: {text}")
        if self.ops:
            lines.append(f"ops: {', '.join(self.ops)}")
        header = ["tensor", "shape", "dtype", "storage", "bytes", "sparsity"]
        rows = [
            [
                t["name"].split(";")[0][:60],
                "x".join(str(d) for d in t["shape"]) or "scalar",
                t["dtype"],
                t["storage"],
                f"{t['bytes']:,}",
                "-" if t["sparsity"] is None else f"{t['sparsity']:.2%}",
            ]
            for t in self.tensors
        ]
        rows.append(["total", "", "", "", f"{sum(t['bytes'] for t in self.tensors):,}", f"{self.sparsity:.2%}"])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

        def fmt(cells):
            return "  ".join(
                c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        lines += [fmt(header), rule] + [fmt(r) for r in rows[:-1]] + [rule, fmt(rows[-1])]
        return "\n".join(lines)


_LABELS = {"keras": "a .keras file", "saved_model": "a SavedModel", "tflite": "a .tflite file"}


def _row(name, shape, dtype, storage, stored_bytes, size, zeros):
    return {
        "name": name,
        "shape": tuple(int(d) for d in shape),
        "dtype": dtype,
        "storage": storage,
        "bytes": int(stored_bytes),
        "size": int(size),
        "zeros": None if zeros is None else int(zeros),
        "sparsity": None if zeros is None or not size else zeros / size,
    }


def _keras(path):
    from tfprune._analysis.report import sparsity_report

    report = sparsity_report(path)
    tensors = tuple(
        _row(f"{r['layer']}/{r['weight']}", r["shape"], "float32", "dense", 4 * r["parameters"],
             r["parameters"], r["zeros"])
        for r in report.rows
    )
    return tensors, (), (), ()


def _signature(loaded):
    signature = getattr(loaded, "signatures", {}).get("serving_default")
    if signature is None:
        return (), ()
    _, kwargs = signature.structured_input_signature
    inputs = tuple((k, tuple(v.shape.as_list()), v.dtype.name) for k, v in sorted(kwargs.items()))
    outputs = tuple(
        (k, tuple(v.shape.as_list()), v.dtype.name) for k, v in sorted(signature.structured_outputs.items())
    )
    return inputs, outputs


def _saved_model(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    variables = [(v.name.split(":")[0], v.numpy()) for v in getattr(loaded, "variables", [])]
    if not variables:
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
        variables = [
            (key, reader.get_tensor(key))
            for key in sorted(reader.get_variable_to_shape_map())
            if not keras_internals.is_object_graph_key(key)
        ]
    tensors = tuple(
        _row(name, value.shape, value.dtype.name, "dense", value.nbytes, value.size,
             value.size - np.count_nonzero(value))
        for name, value in variables
        if np.ndim(value) >= 2
    )
    return (tensors, ()) + _signature(loaded)


def _tflite(path):
    with open(path, "rb") as f:
        content = f.read()
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    info = _flatbuffer.parse(content)
    tensors = tuple(
        _row(t.name, t.shape, t.dtype, t.storage, t.bytes, t.size, t.zeros)
        for t in info.tensors
        if len(t.shape) >= 2
    )
    return tensors, info.ops, info.inputs, info.outputs


def inspect(path) -> Inspection:
    """Reports the tensors, sizes and sparsity of an exported model.

    Args:
        path: a `.keras` file, a SavedModel directory or a `.tflite` file.

    Returns:
        An `Inspection`; print it for a table of the tensors (shape, dtype,
        storage format, stored bytes, sparsity) and, for TFLite, the ops.

    Raises:
        TypeError: if `path` is not a string or path-like.
        ValueError: if `path` does not exist, is none of the supported
            kinds, or cannot be read (a corrupt file).

    Example:

    ```python
    print(tfprune.export.inspect("model.tflite"))
    ```
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a string or a path-like object. {received('path', path)}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"`path` does not exist. {received('path', path)}")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        kind, reader = "saved_model", _saved_model
    elif os.path.isfile(path) and path.endswith(".keras"):
        kind, reader = "keras", _keras
    elif os.path.isfile(path) and path.endswith(".tflite"):
        kind, reader = "tflite", _tflite
    else:
        raise ValueError(
            "`path` must be a `.keras` file, a SavedModel directory (with saved_model.pb) "
            f"or a `.tflite` file. {received('path', path)}"
        )
    try:
        tensors, ops, inputs, outputs = reader(path)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(
            f"`path` could not be read as {_LABELS[kind]} ({type(e).__name__}: "
            f"{first}). {received('path', path)}"
        ) from e
    gz, method = _atomic.gzip_bytes(path)
    return Inspection(
        kind=kind,
        path=os.path.abspath(path),
        bytes=_atomic.disk_bytes(path),
        gzip_bytes=gz,
        gzip_method=method,
        tensors=tensors,
        ops=tuple(ops),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
    )
