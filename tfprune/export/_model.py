"""Model preparation shared by the exporters: strip, shrink, inputs, checks."""

from __future__ import annotations

import os

import keras
import numpy as np

from tfprune._base import keras_internals
from tfprune._analysis.report import sparsity_report
from tfprune._base.validation import received
from tfprune._training.strip import strip
from tfprune._training.wrapper import find_wrappers


def load(model, name: str = "model"):
    """Returns `model` as a built Keras model; a `.keras` path is loaded."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not path.endswith(".keras"):
            raise ValueError(
                f"`{name}` must be a Keras model or a path to a `.keras` file. {received(name, path)}"
            )
        if not os.path.isfile(path):
            raise ValueError(f"`{name}` path does not exist. {received(name, path)}")
        model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, keras.Model):
        raise TypeError(f"`{name}` must be a Keras model or a `.keras` path. {received(name, model)}")
    if not model.built:
        raise ValueError(
            f"`{name}` must be built before it is exported: give it an `Input` or "
            f"call it on data. Received: {name}={model.name} (not built)"
        )
    return model


def prepare(model, shrink: bool):
    """The plain model to export, the model to compare with, and notes.

    Wrappers are stripped (`tfprune.strip`); with `shrink`, dead units are
    removed too (`tfprune.shrink`). The reference is the stripped model, so
    a shrunk export is checked against the model before shrinking.
    """
    check_bool("shrink", shrink)
    notes = []
    order = input_order_note(model)
    if order is not None:
        notes.append(order)
    plain = model
    if find_wrappers(model):
        plain = strip(model)
        notes.append("pruning wrappers stripped (masks baked into the weights)")
    reference = plain
    if shrink:
        from tfprune._shrink import shrink as shrink_fn  # imports the exporters' peers

        plain = shrink_fn(plain)
        before, after = reference.count_params(), plain.count_params()
        notes.append(f"shrunk: dead units removed, {before:,} -> {after:,} parameters")
    return plain, reference, notes


def model_sparsity(model) -> float:
    """Fraction of zeros in the prunable tensors of a plain model."""
    return float(sparsity_report(model).sparsity)


def _dict_inputs(model):
    """The dict a Functional model takes as its inputs, or None."""
    structure = keras_internals.inputs_struct(model)
    return structure if isinstance(structure, dict) else None


def pack(model, flat):
    """Arranges flat inputs (in `model.inputs` order) as the model takes them.

    A Functional model built on a dict or nested list of inputs is called
    with that structure: `model.inputs` flattens it (dict keys sorted), and
    a dict-input model whose keys are not in sorted order rejects a list.
    """
    structure = keras_internals.inputs_struct(model)
    if structure is not None and keras.tree.is_nested(structure):
        return keras.tree.pack_sequence_as(structure, list(flat))
    return flat[0] if len(flat) == 1 else list(flat)


def input_order_note(model):
    """For dict-input models: which key each exported input stands for."""
    structure = _dict_inputs(model)
    if structure is None or keras.tree.is_nested(list(structure.values())[0]):
        return None
    order = ", ".join(f"input_{i}={key}" for i, key in enumerate(sorted(structure)))
    return f"dict inputs exported in sorted key order: {order}"


def _as_arrays(value, name, model=None):
    if isinstance(value, dict):
        structure = _dict_inputs(model)
        if structure is None or set(value) != set(structure):
            expected = (
                f"a dict with the keys {sorted(structure)}"
                if structure is not None
                else "not a dict (the model's inputs are not a dict)"
            )
            raise TypeError(
                f"`{name}` must be an array or a list of arrays (one per model input), "
                f"or for a model with dict inputs {expected}. "
                f"Received: {name}=a dict with keys {list(value)}"
            )
        value = [value[key] for key in sorted(value)]
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        return [np.asarray(keras.ops.convert_to_numpy(v)) for v in items]
    except Exception as e:
        raise TypeError(
            f"`{name}` must be an array or a list of arrays. {received(name, value)}"
        ) from e


def _shapes(arrays):
    return [tuple(a.shape) for a in arrays]


def input_specs(model, sample_inputs=None):
    """`(shape, dtype, name)` of each model input, with batch size None.

    Taken from `model.inputs`; a model without them (subclassed) needs
    `sample_inputs`.
    """
    inputs = getattr(model, "inputs", None)
    if inputs:
        return [
            ((None,) + tuple(x.shape[1:]), keras.backend.standardize_dtype(x.dtype), f"input_{i}")
            for i, x in enumerate(inputs)
        ]
    if sample_inputs is None:
        raise ValueError(
            "`model` has no known input shape (a subclassed model built without an "
            "`Input`): pass `sample_inputs` (an array or list of arrays, one per input) "
            f"so the input signature can be derived. Received: model={model.name}"
        )
    arrays = _as_arrays(sample_inputs, "sample_inputs", model)
    return [((None,) + a.shape[1:], str(a.dtype), f"input_{i}") for i, a in enumerate(arrays)]


def check_inputs(arrays, specs, name):
    """Checks arrays against the specs (batch size free) and casts dtypes."""
    if len(arrays) != len(specs) or any(a.ndim != len(s[0]) for a, s in zip(arrays, specs)):
        raise ValueError(
            f"`{name}` must hold one array per model input with shapes "
            f"{[s[0] for s in specs]} (None: any size). Received: {name} with shapes "
            f"{_shapes(arrays)}"
        )
    for a, (shape, _, _) in zip(arrays, specs):
        if any(d is not None and d != n for d, n in zip(shape, a.shape)):
            raise ValueError(
                f"`{name}` must match the model's input shapes {[s[0] for s in specs]} "
                f"(None: any size). Received: {name} with shapes {_shapes(arrays)}"
            )
    return [a.astype(dtype) for a, (_, dtype, _) in zip(arrays, specs)]


def user_inputs(value, specs, name, model=None):
    """Validated arrays from a user's `sample_inputs` (a dict for a model
    with dict inputs is taken in `model.inputs` order)."""
    return check_inputs(_as_arrays(value, name, model), specs, name)


def _vocabulary(model) -> int:
    sizes = [
        layer.input_dim
        for layer in keras_internals.flatten_layers(model)
        if isinstance(layer, keras.layers.Embedding)
    ]
    return min(sizes) if sizes else 2


def random_inputs(model, specs, batch: int = 4, seed: int = 0):
    """Random arrays shaped like the inputs; integers index the embeddings."""
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, dtype, _ in specs:
        if any(d is None for d in shape[1:]):
            raise ValueError(
                "`sample_inputs` is needed: the model's input shape "
                f"{shape} has an unknown dimension besides the batch, so random test "
                "inputs cannot be made. Received: sample_inputs=None"
            )
        full = (batch,) + tuple(shape[1:])
        if np.issubdtype(np.dtype(dtype), np.integer):
            arrays.append(rng.integers(0, _vocabulary(model), size=full).astype(dtype))
        elif np.dtype(dtype) == np.bool_:
            arrays.append(rng.integers(0, 2, size=full).astype(bool))
        else:
            arrays.append(rng.standard_normal(full).astype(dtype))
    return arrays


def call(model, arrays):
    """Runs the Keras model in inference mode; flat list of numpy outputs."""
    outputs = model(pack(model, arrays), training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]


def max_error(reference, outputs) -> tuple[float, float]:
    """Largest absolute error and the same relative to the output scale.

    The scale of an output is its largest absolute reference value (at
    least 1e-6); the relative error is the worst over the outputs.
    """
    if len(reference) != len(outputs):
        return float("inf"), float("inf")
    worst_abs, worst_rel = 0.0, 0.0
    for ref, out in zip(reference, outputs):
        out = np.asarray(out, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if ref.shape != out.shape:
            return float("inf"), float("inf")
        if ref.size == 0:
            continue
        err = float(np.max(np.abs(out - ref)))
        if not np.isfinite(err):
            return float("inf"), float("inf")
        scale = max(float(np.max(np.abs(ref))), 1e-6)
        worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, err / scale)
    return worst_abs, worst_rel


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. {received(name, value)}")
    return value


def check_tolerance(tolerance, default: float) -> float:
    if tolerance is None:
        return default
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ValueError(
            f"`tolerance` must be a positive number (relative to the largest output "
            f"value) or None for the default. {received('tolerance', tolerance)}"
        )
    return float(tolerance)
