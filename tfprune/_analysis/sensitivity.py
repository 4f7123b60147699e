"""`tfprune.sensitivity`: how much each layer suffers from pruning.

One layer at a time is pruned one-shot by magnitude at a few sparsities, the
model is evaluated, and the weights are put back exactly. The resulting
`SensitivityTable` shows which layers tolerate pruning and feeds
`tfprune.strategies.SensitivityAllocation`.
"""

from __future__ import annotations

import fnmatch

import keras
import numpy as np

from tfprune._base import walk
from tfprune._base.sensitivity_table import SensitivityTable
from tfprune._base.sensitivity_table import metric_mode
from tfprune._base.validation import check_sparsity
from tfprune._base.validation import received
from tfprune._masks.core import magnitude_mask

__all__ = ["sensitivity"]


def _batches(data, batch_size):
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        n = len(keras.tree.flatten(x)[0])
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            yield keras.tree.map_structure(lambda a: a[sl], x), y[sl]
        return
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        tf = None
    if tf is not None and isinstance(data, tf.data.Dataset):
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(
                    "`data` must yield (x, y) batches. Received: data=a dataset "
                    f"yielding {type(batch).__name__}"
                )
            yield batch[0], batch[1]
        return
    raise TypeError(
        f"`data` must be an (x, y) tuple or a tf.data.Dataset of (x, y) batches. "
        f"{received('data', data)}"
    )


def _metric_function(metric, y_true, y_pred):
    """A callable (y_true, y_pred) -> float for `metric`."""
    if callable(metric) and not isinstance(metric, (str, keras.metrics.Metric)):
        return lambda t, p: float(np.mean(keras.ops.convert_to_numpy(metric(t, p))))
    if isinstance(metric, str) and metric.lower() in ("accuracy", "acc"):
        if y_pred.shape[-1] == 1:
            metric = "binary_accuracy"
        elif y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1]:
            metric = "categorical_accuracy"
        else:
            metric = "sparse_categorical_accuracy"
    try:
        m = keras.metrics.get(metric)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "`metric` must be a Keras metric name (such as 'mae', 'mse', 'accuracy') "
            f"or a callable(y_true, y_pred) -> scalar. {received('metric', metric)}"
        ) from e
    if isinstance(m, type):
        m = m()

    def evaluate(t, p):
        m.reset_state()
        m.update_state(t, p)
        return float(keras.ops.convert_to_numpy(m.result()))

    return evaluate


def sensitivity(
    model,
    data,
    sparsities=(0.5, 0.8, 0.9, 0.95),
    metric="mae",
    layers=None,
    verbose: int = 1,
    *,
    mode: str = "auto",
    batch_size: int = 256,
) -> SensitivityTable:
    """Measures how each prunable layer tolerates pruning on its own.

    For each layer that owns prunable weights (the weights of one layer form
    one group: an LSTM cell's kernel and recurrent kernel go together), and
    each sparsity, the layer alone is pruned one-shot by magnitude (per gate
    block for recurrent kernels), the model is evaluated on `data`, and the
    weights are restored exactly. The model is left as it was.

    Args:
        model: a built Keras model (plain or pruned).
        data: an `(x, y)` tuple of arrays or a `tf.data.Dataset` of
            `(x, y)` batches.
        sparsities: sparsities to measure, each in [0, 1). Defaults to
            `(0.5, 0.8, 0.9, 0.95)`.
        metric: a Keras metric name ("mae", "mse", "accuracy", ...) or a
            callable `(y_true, y_pred) -> scalar`. Defaults to "mae".
        layers: optional names, paths or glob patterns of the layers to
            measure. Defaults to all.
        verbose: 1 shows a progress bar, 0 is silent. Defaults to 1.
        mode: "min", "max" or "auto" (from the metric's name): whether lower
            or higher values are better.
        batch_size: batch size for arrays. Defaults to 256.

    Returns:
        A `SensitivityTable`.

    Raises:
        TypeError: if `data` has the wrong type.
        ValueError: for a bad sparsity, metric or layer name.

    Example:

    ```python
    table = tfprune.sensitivity(model, (x_val, y_val), metric="mae")
    print(table)
    strategy = tfprune.strategies.Strategy(
        allocation=tfprune.strategies.SensitivityAllocation(table))
    pruned = tfprune.prune(model, 0.8, strategy=strategy)
    ```
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"`model` must be a Keras model. {received('model', model)}")
    sparsities = sorted({check_sparsity("sparsities", s) for s in sparsities})
    if not sparsities:
        raise ValueError(f"`sparsities` must not be empty. {received('sparsities', sparsities)}")
    groups = {}
    for pw in walk.prunable_weights(model):
        groups.setdefault(walk.relative_path(pw.path, model.name), []).append(pw)
    if layers is not None:
        wanted = [layers] if isinstance(layers, str) else list(layers)
        matches = lambda name, w: any(  # noqa: E731
            fnmatch.fnmatchcase(x, w) for x in (name, name.split("/")[0], name.split("/")[-1])
        )
        missing = [w for w in wanted if not any(matches(n, w) for n in groups)]
        if missing:
            raise ValueError(
                f"`layers` {missing} match no prunable layer of '{model.name}'. "
                f"Prunable layers: {sorted(groups)}. {received('layers', layers)}"
            )
        groups = {n: g for n, g in groups.items() if any(matches(n, w) for w in wanted)}
    batches = list(_batches(data, batch_size))
    y_true = np.concatenate([np.asarray(y) for _, y in batches])

    def evaluate():
        preds = [keras.ops.convert_to_numpy(model(x, training=False)) for x, _ in batches]
        return fn(y_true, np.concatenate(preds))

    first = keras.ops.convert_to_numpy(model(batches[0][0], training=False))
    fn = _metric_function(metric, y_true, first)
    baseline = evaluate()
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    bar = keras.utils.Progbar(len(groups) * len(sparsities)) if verbose else None
    rows = {}
    for layer_path, group in groups.items():
        originals = [np.array(keras.ops.convert_to_numpy(pw.variable.value)) for pw in group]
        values = []
        try:
            for s in sparsities:
                for pw, w in zip(group, originals):
                    mask = keras.ops.convert_to_numpy(magnitude_mask(w, s, None, pw.gates))
                    pw.variable.assign((w * mask).astype(w.dtype))
                values.append(evaluate())
                if bar is not None:
                    bar.add(1)
        finally:
            for pw, w in zip(group, originals):
                pw.variable.assign(w)
        rows[layer_path] = {"n_params": sum(int(w.size) for w in originals), "values": values}
    return SensitivityTable(name, metric_mode(name, mode), baseline, sparsities, rows)
