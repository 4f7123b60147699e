"""Statistics of a layer's inputs, accumulated batch by batch.

Calibration streams: each call of a hooked layer adds its input rows `X`
(a `(tokens, features)` float32 matrix) to running sums, and nothing else
is kept. `FeatureNorms` holds what Wanda needs (the sum of squares of each
input feature, `||X_j||²`), `Hessian` what SparseGPT needs (`XᵀX`, as
`H = 2/N XᵀX`), `OutputError` what the report needs (the layer-wise error
`||X W - X W'||²` of the pruned kernel `W'` against the dense `W`, and
`||X W||²`).
"""

from __future__ import annotations

from keras import ops

__all__ = ["FeatureNorms", "Hessian", "OutputError", "statistic"]


class _Statistic:
    def __init__(self, features: int):
        self.features = features
        self.tokens = 0

    def update(self, x) -> None:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        raise NotImplementedError


class FeatureNorms(_Statistic):
    """Per input feature, the sum of squares over every token seen."""

    def __init__(self, features: int):
        super().__init__(features)
        self.sum_squares = ops.zeros((features,), "float32")

    def update(self, x) -> None:
        self.sum_squares = ops.add(self.sum_squares, ops.sum(ops.square(x), axis=0))
        self.tokens += int(x.shape[0])

    @property
    def norms(self):
        """`||X_j||₂` of each input feature."""
        return ops.sqrt(self.sum_squares)

    @property
    def nbytes(self) -> int:
        return 4 * self.features


class Hessian(_Statistic):
    """`XᵀX` over every token seen; `hessian` is `2/N XᵀX`."""

    def __init__(self, features: int):
        super().__init__(features)
        self.gram = ops.zeros((features, features), "float32")

    def update(self, x) -> None:
        self.gram = ops.add(self.gram, ops.matmul(ops.transpose(x), x))
        self.tokens += int(x.shape[0])

    @property
    def hessian(self):
        return ops.multiply(self.gram, 2.0 / max(self.tokens, 1))

    @property
    def nbytes(self) -> int:
        return 4 * self.features * self.features


class OutputError(_Statistic):
    """`||X (W - W')||²` and `||X W||²` over the inputs seen.

    Args:
        dense: `W`, the kernel before pruning, as a `(features, units)` matrix.
        pruned: `W'`, after.
    """

    def __init__(self, dense, pruned):
        super().__init__(int(dense.shape[0]))
        self.dense = dense
        self.delta = ops.subtract(dense, pruned)
        self.error = 0.0
        self.reference = 0.0

    def update(self, x) -> None:
        self.error = ops.add(self.error, ops.sum(ops.square(ops.matmul(x, self.delta))))
        self.reference = ops.add(self.reference,
                                 ops.sum(ops.square(ops.matmul(x, self.dense))))
        self.tokens += int(x.shape[0])

    @property
    def relative(self):
        """`||X W - X W'||² / ||X W||²`, or None before any input."""
        if not self.tokens:
            return None
        error = float(ops.convert_to_numpy(self.error))
        reference = float(ops.convert_to_numpy(self.reference))
        return error / reference if reference else 0.0

    @property
    def nbytes(self) -> int:
        return 8 * int(self.dense.shape[0]) * int(self.dense.shape[1])


def statistic(kind, features: int):
    """A new accumulator for `kind` ("norms", "hessian"), or None."""
    if kind == "norms":
        return FeatureNorms(features)
    if kind == "hessian":
        return Hessian(features)
    return None
