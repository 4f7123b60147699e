"""Pure mask math: which weights to prune, given their scores.

Nothing here knows about layers, models or training. Every function takes
tensors (or arrays) and returns tensors, built with `keras.ops` so that the
math is backend-neutral.

Conventions:
- A mask holds 1 where a weight is kept and 0 where it is pruned.
- Scores rank weights: the lowest scores are pruned first.
- Ties are broken deterministically: among equal scores, the weight with
  the lower flat index (row-major) is pruned first.
- A weight pruned by the previous mask stays pruned.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops


def num_pruned(size: int, sparsity: float) -> int:
    """Number of weights that a tensor of `size` weights loses at `sparsity`.

    This is `round(size * sparsity)` with Python's rounding, so a tensor
    pruned to `s` holds exactly that many zeros in its mask.

    Example:

    >>> num_pruned(10, 0.25)
    2
    >>> num_pruned(1000, 0.9)
    900
    """
    return int(round(size * float(sparsity)))


def to_groups(x, gates: int = 1):
    """Reshapes a weight-shaped tensor into `(gates, n)` rows.

    Gates are equal blocks along the last axis, as in recurrent kernels where
    the last axis holds `gates * units` columns (LSTM: 4 gates, GRU: 3). Each
    row of the result collects one gate's weights; with `gates=1` the single
    row is the flattened tensor.
    """
    shape = tuple(x.shape)
    if gates == 1:
        return ops.reshape(x, (1, -1))
    units = shape[-1] // gates
    x = ops.reshape(x, (-1, gates, units))
    x = ops.transpose(x, (1, 0, 2))
    return ops.reshape(x, (gates, -1))


def from_groups(rows, shape, gates: int = 1):
    """Inverse of `to_groups`: puts `(gates, n)` rows back into `shape`."""
    shape = tuple(shape)
    if gates == 1:
        return ops.reshape(rows, shape)
    units = shape[-1] // gates
    x = ops.reshape(rows, (gates, -1, units))
    x = ops.transpose(x, (1, 0, 2))
    return ops.reshape(x, shape)


def lowest_k_mask(scores, k: int, previous_mask=None):
    """Mask that prunes the `k` lowest-scoring entries of each row.

    Args:
        scores: float tensor of shape `(rows, n)`.
        k: number of entries to prune in every row, `0 <= k <= n`. Raised
            to the number already pruned in `previous_mask` if that is
            larger, so that a pruned weight stays pruned.
        previous_mask: optional tensor like `scores`; its zeros are pruned
            first, whatever their score.

    Returns:
        A float32 tensor of shape `(rows, n)` with exactly
        `max(k, pruned in previous_mask)` zeros per row (the maximum over
        rows for the previous count, so rows stay equally sparse).

    Example:

    >>> import numpy as np
    >>> m = lowest_k_mask(np.array([[3.0, 1.0, 2.0, 1.0]]), 2)
    >>> np.asarray(m).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    """
    scores = ops.cast(ops.convert_to_tensor(scores), "float32")
    rows, n = tuple(scores.shape)
    if previous_mask is not None:
        previous_mask = ops.cast(ops.convert_to_tensor(previous_mask), "float32")
        already = int(ops.convert_to_numpy(ops.max(n - ops.sum(previous_mask, axis=1))))
        k = max(int(k), already)
        scores = ops.where(previous_mask > 0, scores, -np.inf)
    k = int(min(max(k, 0), n))
    if k == 0:
        return ops.ones((rows, n), "float32")
    if k == n:
        return ops.zeros((rows, n), "float32")
    # `top_k` returns equal values in ascending index order, so the lowest
    # index among tied scores is pruned first.
    _, pruned = ops.top_k(ops.negative(scores), k, sorted=False)
    row_ids = ops.repeat(ops.expand_dims(ops.arange(rows, dtype="int32"), 1), k, axis=1)
    indices = ops.stack(
        [ops.reshape(row_ids, (-1,)), ops.reshape(ops.cast(pruned, "int32"), (-1,))],
        axis=1,
    )
    return ops.scatter_update(
        ops.ones((rows, n), "float32"), indices, ops.zeros((rows * k,), "float32")
    )


def magnitude_mask(weights, sparsity: float, previous_mask=None, gates: int = 1):
    """Magnitude mask of a weight tensor at `sparsity`, per gate block.

    Each of the `gates` blocks along the last axis gets its own threshold and
    exactly `round(n * sparsity)` pruned weights (n = weights per block).

    Example:

    >>> import numpy as np
    >>> w = np.array([[0.1, -2.0], [0.5, 0.05]], "float32")
    >>> np.asarray(magnitude_mask(w, 0.5)).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    shape = tuple(weights.shape)
    rows = to_groups(ops.abs(ops.convert_to_tensor(weights)), gates)
    prev = None if previous_mask is None else to_groups(previous_mask, gates)
    k = num_pruned(int(rows.shape[1]), sparsity)
    return from_groups(lowest_k_mask(rows, k, prev), shape, gates)


def sparsity_of(mask) -> float:
    """Fraction of zeros in a mask or weight tensor."""
    size = int(math.prod(tuple(mask.shape)))
    if size == 0:
        return 0.0
    zeros = size - int(ops.convert_to_numpy(ops.count_nonzero(mask)))
    return zeros / size
