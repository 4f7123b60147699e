"""`tfprune.sparsity_report`: how sparse each prunable tensor is."""

from __future__ import annotations

import math
import os

import keras
import numpy as np

from tfprune._base import walk
from tfprune._base.validation import received
from tfprune._training.wrapper import find_wrappers


class SparsityReport:
    """Per-tensor sparsity of a model, with totals.

    Printing it gives an aligned table. `rows` is a list of dicts with keys
    `layer`, `weight`, `shape`, `parameters`, `zeros`, `sparsity`;
    `to_dict()` returns the rows and the totals.

    Attributes:
        rows: one dict per prunable tensor.
        parameters: total weights in the prunable tensors.
        zeros: total zeros in them.
        sparsity: `zeros / parameters` (0 if there are none).
    """

    def __init__(self, model_name: str, rows: list):
        self.model_name = model_name
        self.rows = rows
        self.parameters = sum(r["parameters"] for r in rows)
        self.zeros = sum(r["zeros"] for r in rows)
        self.sparsity = self.zeros / self.parameters if self.parameters else 0.0

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "tensors": [dict(r) for r in self.rows],
            "parameters": self.parameters,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
        }

    def __getitem__(self, name: str) -> dict:
        """The row of tensor `layer/weight`, e.g. `report["dense/kernel"]`."""
        for row in self.rows:
            if f"{row['layer']}/{row['weight']}" == name:
                return row
        raise KeyError(name)

    def __str__(self) -> str:
        header = ["layer", "weight", "shape", "parameters", "zeros", "sparsity"]
        lines = [
            [
                r["layer"],
                r["weight"],
                "x".join(str(d) for d in r["shape"]),
                f"{r['parameters']:,}",
                f"{r['zeros']:,}",
                f"{r['sparsity']:.2%}",
            ]
            for r in self.rows
        ]
        lines.append(["total", "", "", f"{self.parameters:,}", f"{self.zeros:,}", f"{self.sparsity:.2%}"])
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        right = {3, 4, 5}

        def fmt(cells):
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        body = [fmt(header), rule] + [fmt(line) for line in lines[:-1]] + [rule, fmt(lines[-1])]
        return f"Sparsity of '{self.model_name}'\n" + "\n".join(body)

    def __repr__(self) -> str:
        return (
            f"SparsityReport(model={self.model_name!r}, tensors={len(self.rows)}, "
            f"sparsity={self.sparsity:.4f})"
        )


def sparsity_report(model) -> SparsityReport:
    """Reports the sparsity of every prunable tensor of a model.

    Works on pruned (wrapped) models, where the effective weights are
    weight x mask, on stripped or never-pruned models, and on a path to a
    `.keras` file. Biases and normalization parameters are not listed.

    Args:
        model: a Keras model or layer, or a path to a `.keras` file.

    Returns:
        A `SparsityReport`.

    Raises:
        TypeError: if `model` is neither a model, a layer nor a path.
        ValueError: if the path does not exist or is not a `.keras` file.

    Example:

    ```python
    report = tfprune.sparsity_report(pruned)
    print(report)                 # aligned table
    report.sparsity               # overall, e.g. 0.9
    report.to_dict()["tensors"]   # per tensor
    ```
    """
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ValueError(f"`model` path does not exist. {received('model', path)}")
        if not path.endswith(".keras"):
            raise ValueError(
                "`model` must be a Keras model or a path to a `.keras` file. "
                f"{received('model', path)}"
            )
        model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"`model` must be a Keras model, a layer or a `.keras` path. {received('model', model)}"
        )
    # The mask of each wrapped variable, found by identity: an object map
    # (the model's walk and the wrappers' list the same variables as other
    # `PrunableWeight`s; paths may repeat), not a result; rows are keyed by
    # layer and weight names.
    masks = {}
    for wrapper in find_wrappers(model):
        for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
            masks[id(pw.variable)] = mask
    rows = []
    root = f"{model.name}/" if isinstance(model, keras.Model) else ""
    for pw in walk.prunable_weights(model):
        value = np.asarray(pw.variable.numpy())
        if id(pw.variable) in masks:
            value = value * np.asarray(masks[id(pw.variable)].numpy())
        size = math.prod(value.shape)
        zeros = int(size - np.count_nonzero(value))
        rows.append(
            {
                "layer": pw.path[len(root):] if root and pw.path.startswith(root) else pw.path,
                "weight": pw.variable.name,
                "shape": tuple(int(d) for d in value.shape),
                "parameters": int(size),
                "zeros": zeros,
                "sparsity": zeros / size if size else 0.0,
            }
        )
    return SparsityReport(model.name, rows)
