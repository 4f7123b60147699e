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

from tfprune._base import backend

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


#: Rows of at most this many entries are selected in one pass (`top_k` or
#: radix selection); `lowest_k_rows` selects such rows of several tensors
#: together.
SHORT_ROW = 1 << 14
_EXACT = SHORT_ROW
#: Entries sampled from a longer row to bracket its k-th smallest score.
_SAMPLE = 1 << 14


def _count(condition):
    return ops.sum(ops.cast(condition, "int32"))


def _sample_positions(n):
    """`_SAMPLE` positions spread over `[0, n)` by a golden-ratio (Weyl)
    sequence: deterministic, and not aligned with any row length. `n` may
    be a tensor (a row cut to a data-dependent length)."""
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    spread = np.arange(_SAMPLE, dtype=np.float64) * golden % 1.0
    if isinstance(n, int):
        return (spread * n).astype("int32")
    return ops.cast(ops.floor(ops.convert_to_tensor(spread.astype("float32"))
                              * ops.cast(n, "float32")), "int32")


#: Rounds of bracketing before the remaining entries are sorted.
_ROUNDS = 2


def _from_sorted(row, k):
    """`(value, below, ties)` of the `k`-th smallest entry of `row`."""
    ordered = ops.sort(row)
    value = ops.take(ordered, k - 1)
    below = ops.cast(ops.searchsorted(ordered, value[None], side="left")[0], "int32")
    upto = ops.cast(ops.searchsorted(ordered, value[None], side="right")[0], "int32")
    return value, below, upto - below


def _order_keys(x):
    """int32 keys with the order of the float32 values of `x` (-0.0 and 0.0
    equal): the sign-magnitude bits turned into two's complement."""
    x = ops.where(ops.equal(x, 0.0), 0.0, x)
    bits = ops.view(x, "int32")
    return ops.where(ops.less(bits, 0), ops.bitwise_xor(bits, 0x7FFFFFFF), bits)


def _short_rows_mask(scores, k):
    """Keep-mask of `(rows, n)` scores (no NaN) pruning the `k` lowest of
    each row, ties toward the lowest index, by radix selection.

    The k-th smallest key is found one byte at a time, most significant
    first: a histogram of the byte among the entries that still match the
    bytes chosen so far tells which byte value holds the k-th entry. Four
    histograms of the row and no sort: static shapes, no branch.
    """
    rows, n = tuple(scores.shape)
    keys = _order_keys(scores)
    unsigned = ops.bitwise_xor(keys, -(1 << 31))  # byte order of the unsigned keys
    offsets = ops.arange(rows, dtype="int32")[:, None] * 257
    match = ops.ones((rows, n), "bool")
    rest = ops.broadcast_to(ops.maximum(k, 1), (rows,))
    below = ops.zeros((rows,), "int32")
    for shift in (24, 16, 8, 0):
        byte = ops.bitwise_and(ops.right_shift(unsigned, shift), 255)
        bins = ops.reshape(ops.where(match, byte, 256) + offsets, (-1,))
        counts = ops.reshape(ops.segment_sum(ops.ones_like(bins), bins, rows * 257), (rows, 257))
        cum = ops.cumsum(counts[:, :256], axis=1)
        chosen = ops.sum(ops.cast(ops.less(cum, rest[:, None]), "int32"), axis=1)
        before = ops.take_along_axis(cum, ops.maximum(chosen - 1, 0)[:, None], axis=1)[:, 0]
        before = ops.where(ops.greater(chosen, 0), before, 0)
        rest, below = rest - before, below + before
        match = ops.logical_and(match, ops.equal(byte, chosen[:, None]))
    value = ops.max(ops.where(match, keys, -(1 << 31)), axis=1, keepdims=True)
    tie_rank = ops.cumsum(ops.cast(match, "int32"), axis=1)
    keep = ops.logical_or(ops.greater(keys, value),
                          ops.logical_and(match, ops.greater(tie_rank, rest[:, None])))
    return ops.cast(ops.logical_or(keep, ops.equal(ops.reshape(k, (-1, 1)), 0)), "float32")


def _top_k_rows_mask(scores, k):
    """`_short_rows_mask` by `top_k` (TensorFlow, where `k` may be a tensor).

    The cheaper side is selected: the entries a row loses beyond those
    already at -inf (pruned before: usually a few, so a small `top_k` of the
    others), or the `n - k` it keeps. Either gives a threshold per row; when
    no ties straddle it, the entries on one side of it are exactly the
    answer (checked by counting), and the radix selection runs otherwise.
    `k` is one count for every row or one per row.
    """
    rows, n = tuple(scores.shape)
    k = ops.broadcast_to(k, (rows,))
    gone = ops.equal(scores, -np.inf)
    new = k - ops.sum(ops.cast(gone, "int32"), axis=1)  # losses beyond -inf, per row
    most = ops.max(new)
    left = n - k

    def pruned_side():
        # The `new[r]`-th lowest finite entry of each row is the threshold.
        lowest = ops.negative(ops.top_k(ops.negative(ops.where(gone, np.inf, scores)),
                                        ops.maximum(most, 1))[0])
        value = ops.take_along_axis(lowest, ops.maximum(new - 1, 0)[:, None], axis=1)
        value = ops.where(ops.greater(new, 0)[:, None], value, -np.inf)
        return ops.greater(scores, value)

    def kept_side():
        highest = ops.top_k(scores, ops.maximum(ops.max(left), 1))[0]
        value = ops.take_along_axis(highest, ops.maximum(left - 1, 0)[:, None], axis=1)
        return ops.logical_and(ops.greater_equal(scores, value), ops.greater(left, 0)[:, None])

    usable = ops.greater_equal(ops.min(new), 0)
    keep = ops.cond(ops.logical_and(usable, ops.less_equal(most, ops.min(left))), pruned_side,
                    kept_side)
    exact = ops.all(ops.equal(ops.sum(ops.cast(keep, "int32"), axis=1), left))
    return ops.cond(exact, lambda: ops.cast(keep, "float32"),
                    lambda: _short_rows_mask(scores, k))


def _kth_smallest(x, k, rounds=_ROUNDS):
    """`(value, below, ties)`: the `k`-th smallest entry (1-based, an int32
    tensor in `[1, n]`) of the 1-D float32 row `x` (no NaN), and how many
    entries are less than and equal to it.

    Short rows are sorted. A longer one is bracketed: two values of a fixed
    sample that surround the `k`-th entry are found, and only the entries
    between them (a few percent of the row) are kept, for up to `rounds`
    rounds, before what is left is sorted; if a bracket misses, the row of
    that round is sorted whole. Exact either way: the sample only decides
    the speed. Pure and traceable; `k` may be a tensor.
    """
    n = x.shape[0]
    if not backend.data_dependent_shapes() or (n is not None and n <= _EXACT):
        return _from_sorted(x, k)
    length = ops.shape(x)[0] if n is None else n
    sample = ops.sort(ops.take(x, _sample_positions(length)))
    centre = (ops.cast(k, "float32") - 0.5) / ops.cast(length, "float32") * _SAMPLE
    margin = 3.0 * math.sqrt(_SAMPLE) + 1.0
    at_lo = ops.clip(ops.cast(ops.floor(centre - margin), "int32"), 0, _SAMPLE - 1)
    at_hi = ops.clip(ops.cast(ops.floor(centre + margin), "int32"), 0, _SAMPLE - 1)
    lo, hi = ops.take(sample, at_lo), ops.take(sample, at_hi)
    # Two passes decide where the k-th lies; the other counts, and the
    # gather, are taken only in the branch that needs them.
    upto_lo = _count(ops.less_equal(x, lo))
    below_hi = _count(ops.less(x, hi))

    def from_between():
        # The k-th lies strictly between `lo` and `hi`, and so do all its
        # ties: counts come from the part, offset by the entries up to `lo`.
        inside = ops.logical_and(ops.greater(x, lo), ops.less(x, hi))
        part = ops.take(x, ops.nonzero(inside)[0])
        rest = ops.maximum(k - upto_lo, 1)
        if rounds > 1:
            value, below, ties = ops.cond(
                ops.greater(below_hi - upto_lo, _EXACT),
                lambda: _kth_smallest(part, rest, rounds - 1),
                lambda: _from_sorted(part, rest))
        else:
            value, below, ties = _from_sorted(part, rest)
        return value, below + upto_lo, ties

    def at_or_below_lo():
        # At `lo` (ties, e.g. the -inf of pruned weights: no gather at
        # all), else below the bracket: the whole row is sorted.
        below_lo = _count(ops.less(x, lo))
        return ops.cond(ops.less(below_lo, k), lambda: (lo, below_lo, upto_lo - below_lo),
                        lambda: _from_sorted(x, k))

    def at_or_above_hi():
        upto_hi = _count(ops.less_equal(x, hi))
        return ops.cond(ops.less_equal(k, upto_hi), lambda: (hi, below_hi, upto_hi - below_hi),
                        lambda: _from_sorted(x, k))

    return ops.cond(
        ops.less_equal(k, upto_lo), at_or_below_lo,
        lambda: ops.cond(ops.less_equal(k, below_hi), from_between, at_or_above_hi))


def _lowest_k_row(x, k):
    """Boolean keep-mask of a 1-D row that prunes its `k` lowest entries
    (`1 <= k <= len(x)`, a tensor), ties toward the lowest index."""
    value, below, ties = _kth_smallest(x, k)
    above = ops.greater(x, value)

    def some_ties_kept():
        equal = ops.equal(x, value)
        tie_rank = ops.cumsum(ops.cast(equal, "int32"))
        return ops.logical_or(above, ops.logical_and(equal, ops.greater(tie_rank, k - below)))

    # Usually every entry equal to the k-th is pruned: no tie order needed.
    return ops.cond(ops.greater(ties, k - below), some_ties_kept, lambda: above)


def lowest_k_mask(scores, k, previous_mask=None):
    """Mask that prunes the `k` lowest-scoring entries of each row.

    The `k`-th lowest score of each row is found by selection (see
    `_kth_smallest`): the entries below it are pruned, and among the entries
    equal to it those with the lowest indices. Entries pruned by
    `previous_mask` rank lowest, then NaN scores. Pure `keras.ops` with no
    data-dependent Python control flow: `k` may be a Python int or an int
    tensor, so the function traces once per shape inside `tf.function` or
    `jax.jit`.

    Args:
        scores: float tensor of shape `(rows, n)`.
        k: number of entries to prune in every row, `0 <= k <= n` (clipped).
            Raised to the number already pruned in `previous_mask` if that
            is larger, so that a pruned weight stays pruned.
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
    if n == 0:
        return ops.ones((rows, n), "float32")
    k = ops.clip(ops.cast(k, "int32"), 0, n)
    if previous_mask is None:
        return _select(scores, k)
    kept = ops.greater(as_float32(previous_mask), 0.0)
    counts = ops.sum(ops.cast(kept, "int32"), axis=1)
    already = n - ops.min(counts)
    # Nothing more to prune and rows already equal: the mask stays as it is
    # (its zeros are the `k` lowest, -inf, entries), at the cost of one pass.
    unchanged = ops.logical_and(ops.less_equal(k, already),
                                ops.equal(ops.min(counts), ops.max(counts)))
    return ops.cond(unchanged, lambda: ops.cast(kept, "float32"),
                    lambda: _select(ops.where(kept, scores, -np.inf), ops.maximum(k, already)))


def lowest_k_rows(scores, k, previous_mask=None):
    """`lowest_k_mask` of each row on its own, with a count per row.

    Row `r` of the result is `lowest_k_mask(scores[r:r+1], k[r],
    previous_mask[r:r+1])`, bit for bit: rows of different tensors of one
    length are selected together, in one pass instead of one per tensor.
    Rows longer than 16,384 entries are selected one by one.

    Args:
        scores: float tensor of shape `(rows, n)`.
        k: int tensor or array of shape `(rows,)`, or one int for all.
        previous_mask: optional tensor like `scores`.

    Example:

    >>> import numpy as np
    >>> m = lowest_k_rows(np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]]), np.array([1, 2]))
    >>> np.asarray(m).tolist()
    [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    """
    scores = as_float32(scores)
    rows, n = tuple(scores.shape)
    if n == 0 or rows == 0:
        return ops.ones((rows, n), "float32")
    k = ops.clip(ops.cast(ops.broadcast_to(k, (rows,)), "int32"), 0, n)
    if n > _EXACT:
        return ops.concatenate([lowest_k_mask(scores[r:r + 1], k[r], None if previous_mask is None
                                              else previous_mask[r:r + 1])
                                for r in range(rows)], axis=0)
    if previous_mask is None:
        return _select(scores, k)
    kept = ops.greater(as_float32(previous_mask), 0.0)
    already = n - ops.sum(ops.cast(kept, "int32"), axis=1)
    # Per row as in `lowest_k_mask` (a single row is always "equally sparse").
    unchanged = ops.less_equal(k, already)
    return ops.cond(
        ops.all(unchanged), lambda: ops.cast(kept, "float32"),
        lambda: ops.where(unchanged[:, None], ops.cast(kept, "float32"),
                          _select(ops.where(kept, scores, -np.inf), ops.maximum(k, already))))


def _select(scores, k):
    """Keep-mask of `(rows, n)` float32 scores pruning the `k` (an int32
    tensor in `[0, n]`) lowest of each row; NaN ranks just above -inf."""
    rows, n = tuple(scores.shape)
    lowest = float(np.finfo(np.float32).min)
    if n <= _EXACT:
        select = _top_k_rows_mask if backend.top_k_with_tensor_k() else _short_rows_mask
        return select(ops.where(ops.isnan(scores), lowest, scores), k)
    # The sum is NaN if any score is: one reduction, not a full `where`.
    scores = ops.cond(ops.isnan(ops.sum(scores)),
                      lambda: ops.where(ops.isnan(scores), lowest, scores), lambda: scores)

    def select():
        keep = [_lowest_k_row(scores[r], k) for r in range(rows)]
        keep = ops.stack(keep) if rows > 1 else ops.reshape(keep[0], (1, n))
        return ops.cast(keep, "float32")

    return ops.cond(ops.equal(k, 0), lambda: ops.ones((rows, n), "float32"), select)


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


def apply_mask(value, mask):
    """`value * mask`, the mask cast to the value's dtype: the one place a
    weight is masked (forward pass, constraint, update, strip)."""
    return ops.multiply(value, ops.cast(mask, value.dtype))


def zeros_in(value):
    """Number of zeros of `value`, an int32 tensor (traceable)."""
    return math.prod(tuple(value.shape)) - ops.cast(ops.count_nonzero(value), "int32")


def sparsity_of(mask) -> float:
    """Fraction of zeros in a mask or weight tensor."""
    size = int(math.prod(tuple(mask.shape)))
    if size == 0:
        return 0.0
    return int(ops.convert_to_numpy(zeros_in(ops.convert_to_tensor(mask)))) / size
