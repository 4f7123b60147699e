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

import keras
import numpy as np
from keras import ops


def as_float32(x):
    """`x` as a float32 tensor.

    Arrays, lists, tensors and variables are accepted: a Keras variable, or
    a backend variable such as `tf.Variable` (what `keras.ops` returns for a
    Keras variable's `.value`), gives its current value.
    """
    x = ops.convert_to_tensor(x)
    if isinstance(x, keras.Variable) or not hasattr(x, "ndim"):
        x = ops.reshape(x, tuple(x.shape))  # reads the variable into a tensor
    return ops.cast(x, "float32")


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


#: Rows of at most this many entries are sorted outright when selecting.
_EXACT = 1 << 14
#: Entries sampled from a longer row to bracket its k-th smallest score.
_SAMPLE = 1 << 14


def _count(condition) -> int:
    return int(ops.convert_to_numpy(ops.sum(ops.cast(condition, "int32"))))


def _sample_positions(n: int):
    """`_SAMPLE` positions spread over `[0, n)` by a golden-ratio (Weyl)
    sequence: deterministic, and not aligned with any row length."""
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    return (np.arange(_SAMPLE) * golden % 1.0 * n).astype("int32")


def _kth_smallest(x, k: int):
    """`(value, below, ties)` of the `k`-th smallest entry (1-based) of `x`.

    `x` is a 1-D float32 tensor without NaN, `1 <= k <= len(x)`; `below` and
    `ties` count the entries less than and equal to `value`. A quickselect
    whose pivots come from a fixed sample: each round counts the entries
    below two sample values that bracket the `k`-th and keeps only those
    between them, a few percent of the row, until it is short enough to
    sort. The result is exact whatever the sample; the sample only decides
    how fast the row shrinks.
    """
    offset = 0
    while True:
        n = int(x.shape[0])
        if n <= _EXACT:
            value = ops.sort(x)[k - 1]
            below = _count(ops.less(x, value))
            return value, offset + below, _count(ops.equal(x, value))
        sample = ops.sort(ops.take(x, _sample_positions(n)))
        centre = (k - 0.5) / n * _SAMPLE
        margin = 3.0 * math.sqrt(_SAMPLE) + 1.0
        lo = sample[max(int(centre - margin), 0)]
        hi = sample[min(int(centre + margin), _SAMPLE - 1)]
        upto_lo = _count(ops.less_equal(x, lo))
        if k <= upto_lo:
            below_lo = _count(ops.less(x, lo))
            if k > below_lo:
                return lo, offset + below_lo, upto_lo - below_lo
            x = ops.take(x, ops.nonzero(ops.less(x, lo))[0])
            continue
        below_hi = _count(ops.less(x, hi))
        if k > below_hi:
            upto_hi = _count(ops.less_equal(x, hi))
            if k <= upto_hi:
                return hi, offset + below_hi, upto_hi - below_hi
            x = ops.take(x, ops.nonzero(ops.greater(x, hi))[0])
            k, offset = k - upto_hi, offset + upto_hi
            continue
        inside = ops.logical_and(ops.greater(x, lo), ops.less(x, hi))
        x = ops.take(x, ops.nonzero(inside)[0])
        k, offset = k - upto_lo, offset + upto_lo


def _lowest_k_row(x, k: int):
    """Boolean keep-mask of a 1-D row that prunes its `k` lowest entries
    (`0 < k < len(x)`), ties toward the lowest index."""
    value, below, ties = _kth_smallest(x, k)
    keep = ops.greater(x, value)
    pruned_ties = k - below  # the first `pruned_ties` entries equal to `value` go
    if pruned_ties < ties:
        positions = ops.nonzero(ops.equal(x, value))[0]
        last = positions[pruned_ties - 1]
        later = ops.greater(ops.arange(int(x.shape[0]), dtype="int32"), last)
        keep = ops.logical_or(keep, ops.logical_and(ops.equal(x, value), later))
    return keep


def lowest_k_mask(scores, k: int, previous_mask=None):
    """Mask that prunes the `k` lowest-scoring entries of each row.

    The `k`-th lowest score of each row is found by selection (no sort of
    the row; see `_kth_smallest`): the entries below it are pruned, and
    among the entries equal to it those with the lowest indices. NaN scores
    count as the lowest.

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
    scores = as_float32(scores)
    rows, n = tuple(scores.shape)
    if previous_mask is not None:
        kept = as_float32(previous_mask) > 0
        already = n - int(ops.convert_to_numpy(ops.min(ops.sum(ops.cast(kept, "int32"), axis=1))))
        k = max(int(k), already)
        scores = ops.where(kept, scores, -np.inf)
    k = int(min(max(k, 0), n))
    if k == 0:
        return ops.ones((rows, n), "float32")
    if k == n:
        return ops.zeros((rows, n), "float32")
    # The sum is NaN if any score is (one reduction instead of isnan + any).
    if np.isnan(ops.convert_to_numpy(ops.sum(scores))):
        scores = ops.where(ops.isnan(scores), -np.inf, scores)
    keep = [_lowest_k_row(scores[r] if rows > 1 else ops.reshape(scores, (n,)), k)
            for r in range(rows)]
    keep = ops.stack(keep) if rows > 1 else ops.reshape(keep[0], (1, n))
    return ops.cast(keep, "float32")


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
    weights = as_float32(weights)
    shape = tuple(weights.shape)
    rows = to_groups(ops.abs(weights), gates)
    prev = None if previous_mask is None else to_groups(as_float32(previous_mask), gates)
    k = num_pruned(int(rows.shape[1]), sparsity)
    return from_groups(lowest_k_mask(rows, k, prev), shape, gates)


def sparsity_of(mask) -> float:
    """Fraction of zeros in a mask or weight tensor."""
    size = int(math.prod(tuple(mask.shape)))
    if size == 0:
        return 0.0
    zeros = size - int(ops.convert_to_numpy(ops.count_nonzero(mask)))
    return zeros / size
