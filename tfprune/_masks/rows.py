"""Row-wise selections for one-shot pruning: pure `keras.ops` math.

One-shot methods (`tfprune.oneshot`) work on a layer's kernel seen as a 2-D
matrix `(outputs, inputs)` (the orientation of the papers: one row per
output unit, one column per input feature). The masks they form are:

- `row_mask`: each row loses exactly `round(n * sparsity)` of its `n`
  entries (Wanda's per-output comparison group);
- `nm_mask`: in each row, every group of `m` consecutive entries keeps at
  most `n` (exactly `m - n` pruned in every whole group; a last, partial
  group of `r < m` entries loses `max(0, r - n)`);
- `segment_mask`: the `round(len * sparsity)` lowest entries of each
  segment of rows (the gate blocks of a recurrent kernel), for per-tensor
  and per-block counts.

Ties go toward the lowest index, as everywhere in tfprune
(`tfprune._masks.core.lowest_k_mask`).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from tfprune._masks.core import as_float32
from tfprune._masks.core import lowest_k_mask
from tfprune._masks.core import num_pruned

__all__ = ["row_mask", "nm_mask", "segment_mask", "nm_group_count"]


def row_mask(scores, sparsity: float):
    """Keep-mask pruning the `round(n * sparsity)` lowest of each row.

    Example:

    >>> import numpy as np
    >>> np.asarray(row_mask(np.array([[3.0, 1.0, 2.0, 0.5], [1.0, 2.0, 3.0, 4.0]]), 0.5)).tolist()
    [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    """
    scores = as_float32(scores)
    return lowest_k_mask(scores, num_pruned(int(scores.shape[1]), sparsity))


def nm_group_count(r: int, n: int) -> int:
    """Entries a group of `r` entries loses under N:M (`n` kept)."""
    return max(0, r - n)


def nm_mask(scores, n: int, m: int):
    """N:M keep-mask along the rows: `n` of every `m` consecutive entries kept.

    Example:

    >>> import numpy as np
    >>> np.asarray(nm_mask(np.array([[4.0, 1.0, 3.0, 2.0, 5.0, 6.0]]), 2, 4)).tolist()
    [[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]]
    """
    scores = as_float32(scores)
    rows, cols = tuple(scores.shape)
    pad = (-cols) % m
    # Padding ranks lowest: a partial group of r entries then loses m - n
    # minus the padding, max(0, r - n) of its own entries.
    padded = ops.pad(scores, [(0, 0), (0, pad)], constant_values=-np.inf)
    groups = ops.reshape(padded, (-1, m))
    keep = lowest_k_mask(groups, m - n)
    keep = ops.reshape(keep, (rows, cols + pad))
    return keep[:, :cols]


def segment_mask(scores, sparsity: float, segments: int = 1):
    """Keep-mask pruning `round(size * sparsity)` of each of `segments` equal
    blocks of rows (each block ranked on its own).

    Example:

    >>> import numpy as np
    >>> s = np.array([[1.0, 9.0], [2.0, 8.0], [3.0, 7.0], [4.0, 6.0]])
    >>> np.asarray(segment_mask(s, 0.5, segments=2)).tolist()
    [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    """
    scores = as_float32(scores)
    shape = tuple(scores.shape)
    flat = ops.reshape(scores, (segments, -1))
    keep = lowest_k_mask(flat, num_pruned(int(flat.shape[1]), sparsity))
    return ops.reshape(keep, shape)
