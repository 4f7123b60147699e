"""Allocation: per-tensor sparsities from one overall target.

An allocation receives the prunable groups of a model as `Candidate`s (name,
parameter count, and item scores or a sensitivity curve) and an overall
target sparsity, and returns `{name: sparsity}`. The target applies to the
weights that are not protected: protected candidates get 0 and do not count.
`Uniform` gives every candidate the target (per-tensor counts are exact);
`Global` and `SensitivityAllocation` prune exactly `round(N * target)` of
the `N` unprotected weights (within one item for blocks, groups and units).

Common arguments (every allocation):
    min_sparsity: floor per candidate, reached gradually: a candidate gets
        at least `min(min_sparsity, target)`. Defaults to 0.
    max_sparsity: cap per candidate (None: no cap). Defaults to None.
    protect_first: keep the candidates of the first layer dense.
    protect_last: keep the candidates of the last layer dense.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math

import keras
import numpy as np

from tfprune._base.config import _Config
from tfprune._base.config import lookup
from tfprune._base.validation import check_sparsity
from tfprune._base.validation import received
from tfprune._masks.ranking import Ranked
from tfprune._masks.ranking import global_counts

__all__ = ["Allocation", "Candidate", "Uniform", "Global", "PerLayer", "get"]


@dataclasses.dataclass
class Candidate:
    """One prunable group, as an allocation sees it.

    Attributes:
        name: unique name (a tensor's "layer/weight" or a unit group's layer).
        n_params: number of weights in the group.
        layer: path of the layer it belongs to (defaults to `name`); used by
            `protect_first`/`protect_last` and sensitivity look-ups.
        scores: item scores, 1-D, higher keeps (`Global` only); `-inf` for
            items already pruned.
        sizes: weights per item: one number for all, or an array like
            `scores` (defaults to 1).
        curve: optional `[(sparsity, loss_increase), ...]` for
            `SensitivityAllocation`, overriding its table.
        protected: never pruned.
        max_sparsity: the granularity's own cap (N:M: `1 - n/m`).
    """

    name: str
    n_params: int
    layer: str | None = None
    scores: object = None
    sizes: object = None
    curve: object = None
    protected: bool = False
    max_sparsity: float = 1.0

    def __post_init__(self):
        self.layer = self.name if self.layer is None else self.layer


def _check_fraction(name, value, allow_none=False, upper_inclusive=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0):
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"`{name}` must be a number in {bound}. {received(name, value)}")
    return float(value)


class Allocation(_Config):
    """Base class: checks, protection and bounds; subclasses split the count.

    `model_wide` is True when one layer's share depends on the others (a
    global ranking): `PruningCallback` then updates every layer at once and
    needs one schedule for the whole model.
    """

    needs_scores = False
    reaches_target = True
    model_wide = True

    def __init__(
        self, min_sparsity=0.0, max_sparsity=None, protect_first=False, protect_last=False
    ):
        self.min_sparsity = _check_fraction("min_sparsity", min_sparsity)
        self.max_sparsity = _check_fraction("max_sparsity", max_sparsity, True, True)
        if self.max_sparsity is not None and self.max_sparsity < self.min_sparsity:
            raise ValueError(
                f"`max_sparsity` must be >= `min_sparsity` ({self.min_sparsity}). "
                f"{received('max_sparsity', max_sparsity)}"
            )
        self.protect_first = bool(protect_first)
        self.protect_last = bool(protect_last)

    def allocate(self, candidates, sparsity, final_sparsity=None) -> dict:
        """Per-candidate sparsities for an overall `sparsity`.

        Args:
            candidates: list of `Candidate`, in model order.
            sparsity: overall target in [0, 1) over the unprotected weights.
            final_sparsity: the schedule's final target; `PerLayer` uses it to
                follow the schedule. Defaults to `sparsity`.

        Returns:
            `{name: sparsity}` for every candidate.

        Raises:
            ValueError: if the target cannot be reached within the bounds.
        """
        sparsity = check_sparsity("sparsity", sparsity)
        names = [c.name for c in candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"Candidate names must be unique. Received: names={names}")
        protected = {c.layer for c in candidates if c.protected}
        if candidates and self.protect_first:
            protected.add(candidates[0].layer)
        if candidates and self.protect_last:
            protected.add(candidates[-1].layer)
        result = {c.name: 0.0 for c in candidates}
        active = [c for c in candidates if c.layer not in protected and c.n_params > 0]
        if not active:
            return result
        lo = np.array([min(self.min_sparsity, sparsity) * c.n_params for c in active])
        hi = np.array([self._cap(c) for c in active])
        lo = np.minimum(lo, hi)
        total = sum(c.n_params for c in active)
        k = int(round(total * sparsity))
        if self.reaches_target and k > hi.sum() + 1e-9:
            raise ValueError(
                f"The overall sparsity {sparsity:g} cannot be reached: with the "
                f"protected layers and caps at most {hi.sum() / total:.4g} of the "
                f"unprotected weights can be pruned. {received('sparsity', sparsity)}"
            )
        split = self._split(active, k, lo, hi, sparsity, final_sparsity)
        for c, s in zip(active, split):
            result[c.name] = float(min(max(s, 0.0), 1.0))
        return result

    def _cap(self, c) -> float:
        cap = min(1.0 if self.max_sparsity is None else self.max_sparsity, c.max_sparsity)
        largest = 1.0 if c.sizes is None else float(np.max(np.atleast_1d(c.sizes)))
        return min(cap * c.n_params, c.n_params - largest)

    def _split(self, active, k, lo, hi, sparsity, final_sparsity):
        """Per-candidate sparsities pruning `k` weights in all; `lo`/`hi` are
        the bounds of each candidate in weights."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {
            "min_sparsity": self.min_sparsity,
            "max_sparsity": self.max_sparsity,
            "protect_first": self.protect_first,
            "protect_last": self.protect_last,
        }



def _largest_remainder(exact, k, hi):
    """Integer counts near `exact`, summing to `k`, each at most `hi`."""
    counts = np.minimum(np.floor(exact), np.floor(hi + 1e-9))
    for i in np.argsort(-(exact - counts), kind="stable"):
        if counts.sum() >= k:
            break
        if counts[i] + 1 <= hi[i] + 1e-9:
            counts[i] += 1
    return counts


@keras.saving.register_keras_serializable("tfprune")
class Uniform(Allocation):
    """The same sparsity for every unprotected candidate.

    Each candidate gets exactly the target (its count is `round(n * s)`, as
    in plain magnitude pruning: unlike the other allocations, no item is
    kept back, so a tiny tensor can be emptied at a high target). With
    `min_sparsity`/`max_sparsity` (or a granularity's own cap), candidates
    outside the bounds are clipped and the others share the rest, so the
    overall target holds.

    Example:

    >>> Uniform().allocate([Candidate("a", 100), Candidate("b", 10)], 0.5)
    {'a': 0.5, 'b': 0.5}
    """

    model_wide = False

    def _cap(self, c) -> float:
        # Exactly `round(n * s)` per tensor, as plain magnitude pruning: no
        # item is kept back unless a cap says so.
        return min(1.0 if self.max_sparsity is None else self.max_sparsity, c.max_sparsity) \
            * c.n_params

    def _split(self, active, k, lo, hi, sparsity, final_sparsity):
        n = np.array([c.n_params for c in active], dtype=np.float64)
        if np.all(lo <= sparsity * n + 1e-9) and np.all(sparsity * n <= hi + 1e-9):
            return np.full(len(n), sparsity)
        a, b = 0.0, 1.0
        for _ in range(60):  # water-filling: one level, clipped to the bounds
            t = (a + b) / 2
            a, b = (t, b) if np.clip(t * n, lo, hi).sum() < k else (a, t)
        return _largest_remainder(np.clip(b * n, lo, hi), k, hi) / n


@keras.saving.register_keras_serializable("tfprune")
class Global(Allocation):
    """One ranking across all candidates: the lowest-scoring items go first.

    Every candidate's item scores (weights, blocks, groups or units) enter a
    single ranking and the lowest are pruned until `round(N * target)`
    weights are gone. Ties go to the earlier candidate, then the lower item.
    Layers whose weights have a small scale would be emptied first, so the
    scores can be normalized per candidate first.

    Args:
        normalize: None (raw scores), "l1" (divide by the sum of absolute
            scores), "l2" (by their L2 norm) or "max" (by the largest).
        **kwargs: `min_sparsity`, `max_sparsity`, `protect_first`,
            `protect_last` (see the module docstring).

    Example:

    >>> import numpy as np
    >>> c = [Candidate("a", 2, scores=np.array([1.0, 4.0])),
    ...      Candidate("b", 2, scores=np.array([2.0, 3.0]))]
    >>> Global().allocate(c, 0.5)
    {'a': 0.5, 'b': 0.5}
    """

    needs_scores = True

    def __init__(self, normalize=None, **kwargs):
        if normalize not in (None, "l1", "l2", "max"):
            raise ValueError(
                "`normalize` must be None, 'l1', 'l2' or 'max'. "
                f"{received('normalize', normalize)}"
            )
        self.normalize = normalize
        super().__init__(**kwargs)

    def _normalized(self, scores):
        """float32 scores (NaN as `-inf`), divided by their norm."""
        s = np.asarray(scores, dtype=np.float32).reshape(-1)
        nan = np.isnan(s)
        if self.normalize is None and not nan.any():
            return s
        s = np.where(nan, np.float32(-np.inf), s)  # a copy: the caller's scores stay
        if self.normalize is None:
            return s
        finite = np.where(np.isfinite(s), s, np.float32(0.0))
        np.abs(finite, out=finite)
        if self.normalize == "l1":
            norm = float(np.sum(finite, dtype=np.float64))
        elif self.normalize == "l2":
            norm = math.sqrt(float(np.sum(np.square(finite, out=finite), dtype=np.float64)))
        else:
            norm = float(finite.max(initial=0.0))
        del finite
        if norm > 0:
            s /= np.float32(norm)
        return s

    def _split(self, active, k, lo, hi, sparsity, final_sparsity):
        ranked = []
        for i, c in enumerate(active):
            if c.scores is None:
                raise ValueError(
                    "Global allocation needs the item scores of every candidate. "
                    f"Received: scores=None for candidate {c.name!r}"
                )
            ranked.append(Ranked(self._normalized(c.scores), c.sizes, lo[i], hi[i]))
        counts = np.array(global_counts(ranked, k), dtype=np.float64)
        return counts / np.array([c.n_params for c in active], dtype=np.float64)

    def get_config(self) -> dict:
        return {"normalize": self.normalize, **super().get_config()}


@keras.saving.register_keras_serializable("tfprune")
class PerLayer(Allocation):
    """Explicit sparsities per layer, following the schedule.

    Each candidate takes the value of the first key that equals, or as a
    glob pattern (`fnmatch`) matches, its name or its layer path. Values are
    final sparsities: during training a candidate gets
    `value * target / final_sparsity`, so every layer follows the shape of
    the schedule and reaches its value at the end. Unmatched candidates get
    `default`, or the target itself when `default` is None. The overall
    sparsity is whatever the values give.

    Args:
        sparsities: `{name_or_pattern: sparsity}`.
        default: sparsity of unmatched candidates; None follows the target.
        **kwargs: the common allocation arguments.

    Example:

    >>> PerLayer({"dense*": 0.9, "out/kernel": 0.0}).allocate(
    ...     [Candidate("dense/kernel", 100), Candidate("out/kernel", 10)], 0.5, 0.5)
    {'dense/kernel': 0.9, 'out/kernel': 0.0}
    """

    reaches_target = False
    model_wide = False

    def __init__(self, sparsities: dict, default=None, **kwargs):
        if not isinstance(sparsities, dict) or not all(isinstance(k, str) for k in sparsities):
            raise TypeError(
                "`sparsities` must be a dict mapping layer names or patterns to "
                f"sparsities. {received('sparsities', sparsities)}"
            )
        self.sparsities = {
            k: check_sparsity(f"sparsities[{k!r}]", v) for k, v in sparsities.items()
        }
        self.default = None if default is None else check_sparsity("default", default)
        super().__init__(**kwargs)

    def _value(self, c):
        for key, value in self.sparsities.items():
            if any(key == x or fnmatch.fnmatchcase(x, key) for x in (c.name, c.layer)):
                return value
        return self.default

    def _split(self, active, k, lo, hi, sparsity, final_sparsity):
        ratio = 1.0 if not final_sparsity else min(sparsity / final_sparsity, 1.0)
        out = []
        for c, low, high in zip(active, lo, hi):
            value = self._value(c)
            target = sparsity if value is None else value * ratio
            out.append(float(np.clip(target, low / c.n_params, high / c.n_params)))
        return np.array(out)

    def get_config(self) -> dict:
        config = {"sparsities": dict(self.sparsities), "default": self.default}
        return {**config, **super().get_config()}


_ALIASES = {"uniform": Uniform, "global": Global}


def get(identifier) -> Allocation:
    """Normalizes an allocation argument.

    Args:
        identifier: an `Allocation`, "uniform", "global", or a serialized
            allocation (dict).

    Returns:
        An `Allocation`.

    Raises:
        ValueError: for an unknown name.
        TypeError: for any other type.

    Example:

    >>> get("global").normalize is None
    True
    """
    return lookup(identifier, Allocation, _ALIASES, "allocation",
                  "a `tfprune.strategies` allocation")
