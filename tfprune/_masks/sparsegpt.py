"""SparseGPT's layer solver: pure `keras.ops` math, no layer or model.

Frantar & Alistarh (2023), "SparseGPT: Massive Language Models Can Be
Accurately Pruned in One-Shot", Algorithm 1. For a linear layer `Y = X W`
with calibration inputs `X` and `H = 2/N XᵀX`, it prunes `W` column by
column (a column is one input feature) and, after each column, updates the
columns not yet processed so that `||X W - X W'||²` grows as little as
possible (the optimal brain surgeon update), using the rows of `U`, the
upper Cholesky factor of `(H + λI)⁻¹` (`λ` = `damping` times the mean of
`H`'s diagonal). Columns are processed in blocks of `block_size`: inside a
block the update is applied column by column (a compiled loop); the
columns after the block get the block's errors in one matrix product (the
lazy batch update). The mask is chosen adaptively:

- unstructured: at the start of each block, from the current weights,
  scores `w² / [U]_jj²`; exactly `round(n * sparsity)` of the block's
  entries are pruned in each gate block of outputs (one for a plain layer;
  4 for an LSTM kernel, 3 for a GRU's);
- N:M (`n` kept of every `m` consecutive inputs): at the start of each
  group of `m` columns, the `m - n` lowest scores of each output go.

Inputs and outputs use the Keras orientation: `weight` is `(inputs,
outputs)`. Math runs in float32, as in the paper's code.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from tfprune._base import backend
from tfprune._masks.core import as_float32
from tfprune._masks.rows import segment_mask

__all__ = ["inverse_hessian_factor", "sparsegpt", "small_lowest_k"]

#: Damping is multiplied by 10 up to this many times when `H + λI` is not
#: numerically positive definite.
_RETRIES = 6


def _finite(x) -> bool:
    return bool(ops.convert_to_numpy(ops.all(ops.isfinite(x))))


def inverse_hessian_factor(hessian, damping: float):
    """`(U, damping)`: the upper Cholesky factor of `(H + λI)⁻¹` and the
    relative damping used.

    Inputs never seen active (a zero on `H`'s diagonal) get a 1 there, so
    that `H` can be inverted (their weights meet no data: any update of
    them is free). If `H + λI` is not numerically positive definite, the
    damping is raised tenfold, up to six times.

    Raises:
        FloatingPointError: if no damping made `H` invertible (it holds
            NaN or infinite values).
    """
    h = as_float32(hessian)
    dead = ops.cast(ops.equal(ops.diagonal(h), 0.0), "float32")
    mean = ops.mean(ops.add(ops.diagonal(h), dead))
    size = int(h.shape[0])
    flip = lambda m: ops.flip(ops.flip(m, 0), 1)  # J m J, J the exchange matrix
    for _ in range(_RETRIES + 1):
        # With J H J = L Lᵀ (L lower), H = (J L J)(J L J)ᵀ and J L J is upper
        # triangular, so H⁻¹ = Uᵀ U with U = (J L J)⁻¹ = J L⁻¹ J: one
        # Cholesky factorization and one triangular inverse, a third of
        # the work of inverting H and factoring the inverse.
        try:
            factor = ops.linalg.cholesky(flip(ops.add(h, ops.diag(ops.add(dead, damping * mean)))))
            factor = flip(ops.linalg.solve_triangular(factor, ops.eye(size), lower=True))
        except Exception:  # not positive definite: each backend raises its own
            factor = None
        if factor is not None and _finite(factor):
            return factor, damping
        damping *= 10.0
    raise FloatingPointError("H + λI could not be factored (it holds NaN or infinite values)")


def small_lowest_k(scores, k: int):
    """Keep-mask pruning the `k` lowest of each row of a narrow `(rows, m)`
    matrix, ties toward the lower index; one comparison per pair (for N:M
    groups, where `m` is small), traceable."""
    a = scores[:, :, None]
    b = scores[:, None, :]
    m = int(scores.shape[1])
    earlier = np.tril(np.ones((m, m), "bool"), -1)  # [i, j]: j < i
    lower = ops.logical_or(ops.less(b, a), ops.logical_and(ops.equal(b, a), earlier[None]))
    rank = ops.sum(ops.cast(lower, "int32"), axis=2)
    return ops.cast(ops.greater_equal(rank, k), "float32")


def _solve(w1, hinv1, sparsity, gates):
    """One unstructured block: `(pruned block, errors, mask)`."""
    width = int(w1.shape[1])
    score = ops.square(w1) / ops.square(ops.diagonal(hinv1))[None, :]
    keep = segment_mask(score, sparsity, gates)
    eye = ops.eye(width, dtype="float32")

    def column(i, carry):
        w1, errors = carry
        w = ops.take(w1, i, axis=1)
        h = ops.take(hinv1, i, axis=0)
        err = ops.divide(ops.multiply(w, ops.subtract(1.0, ops.take(keep, i, axis=1))),
                         ops.take(h, i))
        w1 = ops.subtract(w1, ops.multiply(err[:, None], h[None, :]))
        errors = ops.add(errors, ops.multiply(err[:, None], ops.take(eye, i, axis=0)[None, :]))
        return w1, errors

    w1, errors = ops.fori_loop(0, width, column, (w1, ops.zeros_like(w1)))
    return ops.multiply(w1, keep), errors, keep


def _solve_nm(w1, hinv1, valid, n, m):
    """One block under N:M (its width a multiple of `m`; `valid` is 0 on
    padding columns): `(pruned block, errors, mask)`."""
    rows, width = tuple(int(d) for d in w1.shape)
    eye = ops.eye(width, dtype="float32")
    diag = ops.diagonal(hinv1)

    def group(g, carry):
        w1, errors, keep = carry
        start = g * m
        part = ops.slice(w1, [0, start], [rows, m])
        d = ops.slice(diag, [start], [m])
        ok = ops.slice(valid, [start], [m])
        score = ops.where(ok[None, :] > 0, ops.square(part) / ops.square(d)[None, :], -np.inf)
        keep_g = small_lowest_k(score, m - n)
        for j in range(m):
            i = start + j
            w = ops.take(w1, i, axis=1)
            h = ops.take(hinv1, i, axis=0)
            err = ops.divide(ops.multiply(w, ops.subtract(1.0, keep_g[:, j])), ops.take(h, i))
            w1 = ops.subtract(w1, ops.multiply(err[:, None], h[None, :]))
            errors = ops.add(errors,
                             ops.multiply(err[:, None], ops.take(eye, i, axis=0)[None, :]))
        keep = ops.slice_update(keep, [0, start], keep_g)
        return w1, errors, keep

    init = (w1, ops.zeros_like(w1), ops.ones_like(w1))
    w1, errors, keep = ops.fori_loop(0, width // m, group, init)
    return ops.multiply(w1, keep), errors, keep


def sparsegpt(weight, hessian, sparsity: float, *, nm=None, block_size: int = 128,
              damping: float = 0.01, gates: int = 1):
    """Prunes one layer's kernel with SparseGPT.

    Args:
        weight: `(inputs, outputs)` kernel (any float dtype; math in float32).
        hessian: `(inputs, inputs)`, `2/N XᵀX` of the calibration inputs.
        sparsity: fraction pruned (unstructured), in [0, 1).
        nm: `(n, m)` for N:M (`n` kept of every `m` consecutive inputs;
            `sparsity` is then ignored), or None.
        block_size: columns per lazy block (a multiple of `m` under N:M).
        damping: relative damping `λ / mean(diag H)`.
        gates: gate blocks along the output axis, each with its own counts.

    Returns:
        `(new_weight, keep_mask, damping_used)`: float32 `(inputs, outputs)`
        tensors (pruned entries exactly 0) and the damping that made `H`
        invertible.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(256, 8)).astype("float32")
    >>> w = rng.normal(size=(8, 3)).astype("float32")
    >>> new, keep, _ = sparsegpt(w, 2 / 256 * x.T @ x, 0.5, block_size=4)
    >>> int(np.sum(np.asarray(keep) == 0)), bool(np.all(np.asarray(new)[np.asarray(keep) == 0] == 0))
    (12, True)
    """
    w = ops.transpose(as_float32(weight))
    upper, used = inverse_hessian_factor(hessian, damping)
    rows, cols = tuple(int(d) for d in w.shape)
    solve = backend.cached(_solve, (2, 3))
    solve_nm = backend.cached(_solve_nm, (3, 4))
    done, masks, tail = [], [], w
    for start in range(0, cols, block_size):
        width = min(block_size, cols - start)
        w1 = tail[:, :width]
        hinv1 = upper[start:start + width, start:start + width]
        if nm is None:
            q1, errors, keep = solve(w1, hinv1, sparsity, gates)
        else:
            n, m = nm
            pad = (-width) % m
            valid = ops.concatenate([ops.ones((width,)), ops.zeros((pad,))])
            w1p = ops.pad(w1, [(0, 0), (0, pad)])
            hinv1p = ops.pad(hinv1, [(0, pad), (0, pad)])
            hinv1p = ops.add(hinv1p, ops.diag(ops.subtract(1.0, valid)))
            q1, errors, keep = solve_nm(w1p, hinv1p, valid, n, m)
            q1, errors, keep = q1[:, :width], errors[:, :width], keep[:, :width]
        done.append(q1)
        masks.append(keep)
        rest = tail[:, width:]
        if int(rest.shape[1]):
            tail = ops.subtract(rest, ops.matmul(errors, upper[start:start + width, start + width:]))
    new = ops.concatenate(done, axis=1) if len(done) > 1 else done[0]
    keep = ops.concatenate(masks, axis=1) if len(masks) > 1 else masks[0]
    return ops.transpose(new), ops.transpose(keep), used
