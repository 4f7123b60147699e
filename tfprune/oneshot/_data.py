"""Calibration data: whatever the user passes, as a list of input batches.

Accepted, as Keras' `predict` takes them: an array (or tensor), a list of
arrays (several inputs), a dict of arrays (named inputs, as keras_hub models
take them), an `(x, y)` or `(x, y, sample_weight)` tuple (only `x` is used),
a `tf.data.Dataset` or `keras.utils.PyDataset` of batches, or any other
iterable of batches (a generator). In-memory data is cut into batches of
`batch_size` samples.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune._base.channels import graph_view
from tfprune._base.validation import check_positive_int
from tfprune._base.validation import received

__all__ = ["calibration_batches", "flat_inputs", "samples_in"]


def _is_array(x) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "shape") and hasattr(x, "dtype"))


def _in_memory(x) -> bool:
    if _is_array(x):
        return True
    if isinstance(x, dict):
        return bool(x) and all(_is_array(v) for v in x.values())
    if isinstance(x, list):
        return bool(x) and all(_is_array(v) for v in x)
    return False


def _tensor(x):
    return keras.ops.convert_to_tensor(np.asarray(x))


def _x_of(element):
    """The inputs of one element: `x` of an `(x, y[, w])` tuple."""
    if isinstance(element, tuple):
        return keras.utils.unpack_x_y_sample_weight(element)[0]
    return element


def samples_in(batch) -> int:
    """Number of samples of a batch (its first leaf's first dimension)."""
    leaves = keras.tree.flatten(batch)
    return int(leaves[0].shape[0]) if leaves and len(leaves[0].shape) else 0


def calibration_batches(data, batch_size=None) -> list:
    """`data` as a list of batches of backend tensors (structure kept).

    Raises:
        TypeError: for data of an unknown kind, or a `batch_size` that is
            not an integer.
        ValueError: if `data` holds no sample.
    """
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(data, tuple):
        data = _x_of(data)
    if _in_memory(data):
        n = samples_in(data)
        size = batch_size or 32
        batches = [keras.tree.map_structure(lambda a, s=start: _tensor(a[s:s + size]), data)
                   for start in range(0, n, size)]
    elif isinstance(data, keras.utils.PyDataset):
        batches = [keras.tree.map_structure(_tensor, _x_of(data[i])) for i in range(len(data))]
    elif (hasattr(data, "__iter__") and not isinstance(data, (str, bytes, dict, list))) or (
            isinstance(data, list) and data
            and all(isinstance(e, (dict, tuple)) for e in data)):
        batches = [keras.tree.map_structure(_tensor, _x_of(e)) for e in data]
    else:
        raise TypeError(
            "`data` must be an array, a list or dict of arrays, an (x, y) tuple, a "
            "tf.data.Dataset, a keras.utils.PyDataset or an iterable of batches. "
            f"{received('data', type(data).__name__)}")
    batches = [b for b in batches if samples_in(b)]
    if not batches:
        raise ValueError(
            "`data` holds no samples: calibration needs at least one batch of inputs. "
            f"{received('data', type(data).__name__)}")
    return batches


def _describe(batch) -> str:
    return repr(keras.tree.map_structure(lambda a: tuple(a.shape), batch))


def flat_inputs(model, batch) -> list:
    """The batch as a list in `model.inputs` order, checked against them.

    Raises:
        ValueError: if the batch does not have the model's inputs: other
            names, another number of inputs, or shapes that do not fit.
    """
    view = graph_view(model)
    struct = view.input
    expected = list(view.inputs)
    if isinstance(struct, dict):
        if not isinstance(batch, dict) or set(batch) != set(struct):
            raise ValueError(
                f"`data` must give model '{model.name}' its inputs {sorted(struct)} by "
                f"name. Received: data={_describe(batch)}")
        flat = [batch[k] for k in sorted(struct)]
    elif isinstance(batch, dict):
        names = [t.name for t in expected]
        if set(batch) != set(names):
            raise ValueError(
                f"`data` names inputs that model '{model.name}' does not have: its inputs "
                f"are {names}. Received: data={_describe(batch)}")
        flat = [batch[k] for k in names]
    else:
        flat = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        if len(flat) != len(expected):
            raise ValueError(
                f"`data` must give model '{model.name}' {len(expected)} inputs. "
                f"Received: data={_describe(batch)}")
    for tensor, value in zip(expected, flat):
        want = tuple(tensor.shape)
        got = tuple(value.shape)
        if len(want) != len(got) or any(
                w is not None and w != g for w, g in zip(want[1:], got[1:])):
            raise ValueError(
                f"`data` does not fit input '{tensor.name}' of model '{model.name}', of "
                f"shape {want}. Received: data={_describe(batch)}")
    return flat
