"""One-shot pruning methods: `Magnitude`, `Wanda`, `SparseGPT`.

A method is a small serializable config (sparsity, granularity and its own
options) with one operation, `prune(weight, statistic, gates)`: a kernel
seen as a `(inputs, outputs)` matrix, plus what calibration collected for
it, in; the new kernel and its keep-mask out (pure `keras.ops`).

Exact counts, per method:

| method | unstructured | N:M | Block |
| --- | --- | --- | --- |
| `Magnitude` | per tensor (per gate block of recurrent kernels), or per output | every group | per tensor |
| `Wanda` | per output (each output unit loses `round(inputs * s)`), or per tensor | every group | per tensor |
| `SparseGPT` | per block of `block_size` inputs (and gate block), `round(size * s)` | every group | - |

N:M groups are `m` consecutive input features of one output unit (for a
convolution: consecutive input channels of one kernel position), the
layout 2:4 sparse kernels use.
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

from tfprune import granularity as granularity_lib
from tfprune._base import backend
from tfprune._base.config import _Config
from tfprune._base.config import lookup
from tfprune._base.validation import check_positive_int
from tfprune._base.validation import check_sparsity
from tfprune._base.validation import received
from tfprune._masks.core import as_float32
from tfprune._masks.rows import nm_mask
from tfprune._masks.rows import row_mask
from tfprune._masks.sparsegpt import sparsegpt

__all__ = ["OneShotMethod", "Magnitude", "Wanda", "SparseGPT", "get"]


def _serialize(obj):
    return keras.saving.serialize_keras_object(obj)


class OneShotMethod(_Config):
    """Base class of one-shot methods.

    Subclasses set `statistic` ("norms", "hessian" or None: what calibration
    collects for each layer) and implement `scores` or `prune`.

    Args:
        sparsity: fraction of each kernel to prune, in [0, 1). Defaults to
            None: 0.5, or `1 - n/m` for `NM(n, m)`.
        granularity: `Unstructured()` ("unstructured", default), `NM(n, m)`
            ("2:4") or, where the method allows it, `Block(...)`.
        comparison: which weights compete for pruning with unstructured
            granularity: "output" (those of one output unit) or "tensor"
            (the whole kernel, per gate block). None: the method's default.
    """

    statistic = None
    default_comparison = "tensor"
    granularities = (granularity_lib.Unstructured, granularity_lib.NM, granularity_lib.Block)

    def __init__(self, sparsity=None, granularity="unstructured", comparison=None):
        self.granularity = granularity_lib.get(granularity)
        self._check_granularity()
        if isinstance(self.granularity, granularity_lib.NM):
            full = self.granularity.max_sparsity
            if sparsity is not None and abs(check_sparsity("sparsity", sparsity) - full) > 1e-9:
                raise ValueError(
                    f"{self.granularity!r} keeps exactly {self.granularity.n} of every "
                    f"{self.granularity.m} weights: its sparsity is {full:g}; leave `sparsity` "
                    f"unset or pass {full:g}. {received('sparsity', sparsity)}")
        self.sparsity = None if sparsity is None else check_sparsity("sparsity", sparsity)
        if comparison not in (None, "output", "tensor"):
            raise ValueError(
                "`comparison` must be 'output', 'tensor' or None. "
                f"{received('comparison', comparison)}")
        if comparison is not None and not isinstance(self.granularity,
                                                     granularity_lib.Unstructured):
            raise ValueError(
                f"`comparison` applies to unstructured pruning only: {self.granularity!r} "
                "compares the weights of each group (N:M) or of the whole tensor (Block). "
                f"{received('comparison', comparison)}")
        self.comparison = comparison

    def _check_granularity(self):
        g = self.granularity
        if not isinstance(g, self.granularities):
            allowed = ", ".join(c.__name__ for c in self.granularities)
            raise ValueError(
                f"{type(self).__name__} prunes with {allowed} granularity; {g!r} is not one "
                f"of them (prune whole units during training with `tfprune.prune`). "
                f"{received('granularity', g)}")
        if isinstance(g, granularity_lib.NM) and g.axis != "input":
            raise ValueError(
                "One-shot N:M groups run along each output's input features "
                f"(axis='input'). {received('granularity', g)}")

    # ------------------------------------------------------------- values
    @property
    def target(self) -> float:
        """The sparsity each kernel is pruned to."""
        if isinstance(self.granularity, granularity_lib.NM):
            return self.granularity.max_sparsity
        return 0.5 if self.sparsity is None else self.sparsity

    @property
    def nm(self):
        """`(n, m)` under N:M, else None."""
        g = self.granularity
        return (g.n, g.m) if isinstance(g, granularity_lib.NM) else None

    @property
    def compares(self) -> str:
        """"output", "tensor", "group" (N:M) or "block" (SparseGPT)."""
        if self.nm is not None:
            return "group"
        if isinstance(self.granularity, granularity_lib.Block):
            return "tensor"
        return self.comparison or self.default_comparison

    # -------------------------------------------------------------- math
    def scores(self, weight, norms):
        """Importance of each entry of `weight` (`(inputs, outputs)`), given
        the norms of its input features (None when the method needs none)."""
        raise NotImplementedError

    def prune(self, weight, statistic=None, gates: int = 1):
        """`(new_weight, keep_mask, info)` for a `(inputs, outputs)` kernel.

        Args:
            weight: the kernel as a matrix.
            statistic: what calibration collected for it (see `statistic`).
            gates: gate blocks along the outputs, each counted on its own
                under per-tensor comparison.

        Returns:
            float32 `(inputs, outputs)` tensors (pruned entries exactly 0)
            and a dict of facts for the report.
        """
        norms = None if statistic is None else statistic.norms
        new, keep = backend.cached(_scored_prune, (0, 3))(self, as_float32(weight), norms, gates)
        return new, keep, {}

    def _mask(self, scores, gates):
        if self.nm is not None:
            return ops.transpose(nm_mask(ops.transpose(scores), *self.nm))
        if self.compares == "output":
            return ops.transpose(row_mask(ops.transpose(scores), self.target))
        return self.granularity.mask(scores, self.target, gates=gates)

    def get_config(self) -> dict:
        return {"sparsity": self.sparsity, "granularity": _serialize(self.granularity),
                "comparison": self.comparison}

    def __repr__(self) -> str:
        config = dict(self.get_config(), granularity=self.granularity)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable("tfprune.oneshot")
class Magnitude(OneShotMethod):
    """The baseline: prune the smallest weights, no data needed.

    Scores are `|W|`. With the default per-tensor comparison this is what
    `tfprune.prune(model, s)` does at its first update, in one shot.

    Args:
        sparsity, granularity, comparison: see `OneShotMethod`; comparison
            defaults to "tensor".

    Example:

    >>> import numpy as np
    >>> w = np.array([[0.1, -2.0], [0.5, 0.05]], "float32")
    >>> new, keep, _ = Magnitude(0.5).prune(w)
    >>> np.asarray(keep).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """

    def scores(self, weight, norms=None):
        return ops.abs(weight)


@keras.saving.register_keras_serializable("tfprune.oneshot")
class Wanda(OneShotMethod):
    """Pruning by Weights and activations (Sun et al., 2023).

    Scores are `|W_ij| * ||X_i||₂`: each weight times the norm of its input
    feature over the calibration data, so a small weight on a feature with
    large activations (LLMs' outlier features) is kept. By default each
    output unit loses exactly `round(inputs * s)` of its weights (the
    paper's per-output comparison group). No weight is updated.

    Args:
        sparsity, granularity, comparison: see `OneShotMethod`; comparison
            defaults to "output".

    Example:

    ```python
    pruned = tfprune.prune_oneshot(model, tfprune.oneshot.Wanda(0.5), x_calibration)
    ```
    """

    statistic = "norms"
    default_comparison = "output"

    def scores(self, weight, norms):
        return ops.multiply(ops.abs(weight), norms[:, None])


@keras.saving.register_keras_serializable("tfprune.oneshot")
class SparseGPT(OneShotMethod):
    """SparseGPT (Frantar & Alistarh, 2023): prune, and update the rest.

    Solves, layer by layer, for the pruned kernel that keeps `X W` closest
    to the dense layer's on the calibration inputs: the mask is chosen
    adaptively block by block and the remaining weights are updated to
    absorb each pruned column's error (see `tfprune._masks.sparsegpt`).
    Unstructured: exactly `round(size * s)` pruned in each block of
    `block_size` inputs (per gate block of recurrent kernels); N:M: exact
    in every group.

    Args:
        sparsity, granularity: see `OneShotMethod` (Unstructured or NM).
        damping: relative damping added to `H`'s diagonal. Defaults to 0.01.
        block_size: input columns per lazy update block. Defaults to 128
            (a multiple of `m` under N:M).

    Example:

    ```python
    method = tfprune.oneshot.SparseGPT(granularity=tfprune.granularity.NM(2, 4))
    pruned = tfprune.prune_oneshot(model, method, x_calibration)
    ```
    """

    statistic = "hessian"
    default_comparison = "block"
    granularities = (granularity_lib.Unstructured, granularity_lib.NM)

    def __init__(self, sparsity=None, granularity="unstructured", damping: float = 0.01,
                 block_size: int = 128):
        super().__init__(sparsity, granularity)
        if isinstance(damping, bool) or not isinstance(damping, numbers.Real):
            raise TypeError(f"`damping` must be a number > 0. {received('damping', damping)}")
        if not (math.isfinite(damping) and damping > 0):
            raise ValueError(f"`damping` must be a number > 0. {received('damping', damping)}")
        self.damping = float(damping)
        self.block_size = check_positive_int("block_size", block_size)
        if self.nm is not None and self.block_size % self.nm[1]:
            raise ValueError(
                f"`block_size` must be a multiple of m={self.nm[1]} so that N:M groups do not "
                f"straddle two blocks. {received('block_size', block_size)}")

    def prune(self, weight, statistic=None, gates: int = 1):
        new, keep, used = sparsegpt(weight, statistic.hessian, self.target, nm=self.nm,
                                    block_size=self.block_size, damping=self.damping,
                                    gates=gates)
        return new, keep, {"damping": used}

    def get_config(self) -> dict:
        return {"sparsity": self.sparsity, "granularity": _serialize(self.granularity),
                "damping": self.damping, "block_size": self.block_size}


def _scored_prune(method, weight, norms, gates):
    """`(new_weight, keep)` from the method's scores (pure; compiled once
    per method, shape and gates)."""
    keep = method._mask(method.scores(weight, norms), gates)
    return ops.multiply(weight, keep), keep


_ALIASES = {"magnitude": Magnitude, "wanda": Wanda, "sparsegpt": SparseGPT}


def get(identifier) -> OneShotMethod:
    """Normalizes a method argument.

    Args:
        identifier: a `OneShotMethod`, a name ("magnitude", "wanda",
            "sparsegpt": the method at its defaults, 50% unstructured) or a
            serialized method (dict).

    Returns:
        A `OneShotMethod`.

    Example:

    >>> get("sparsegpt")
    SparseGPT(sparsity=None, granularity=Unstructured(), damping=0.01, block_size=128)
    """
    return lookup(identifier, OneShotMethod, _ALIASES, "method",
                  "a `tfprune.oneshot.OneShotMethod` (Magnitude, Wanda, SparseGPT)")
