"""Granularity: the pattern the pruned weights form.

A granularity turns scores (from `tfprune.criteria`), a target sparsity and
the previous mask into a new mask. Every mask function is pure (`keras.ops`),
prunes an exact count (`round(n * sparsity)` of its items: weights, blocks,
N:M groups or units), breaks ties toward the lowest index, and respects the
previous mask: a pruned weight stays pruned. Decisions are taken per *unit
group* (`tfprune._structure`): one tensor for `Unstructured`, `Block` and
`NM`; for `Units`, every tensor that shares the units (an LSTM cell's kernel,
recurrent kernel and bias; the four kernels of an attention layer).

Interface: `mask(scores, sparsity, previous_mask=None, gates=1)` for one
tensor; `group_masks(group, scores, sparsity, previous_masks) -> {tensor:
mask}`; `item_scores(group, scores, previous_masks) -> (scores, sizes)`, one
score per item for rankings across tensors (`Global` allocation). Scores and
masks may be arrays, tensors or variables.

Each of those is split in two for the compiled mask update: a host-side
part that depends on shapes alone (`count`: how many items go at a
sparsity; `item_sizes`: weights per item) and a pure part that takes the
count as a tensor (`group_masks_for`, `item_tensor`), traced once per
shape by `tf.function` or `jax.jit`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfprune._base import backend
from tfprune._base.config import _Config
from tfprune._base.config import lookup
from tfprune._base.validation import check_sparsity
from tfprune._base.validation import received
from tfprune._masks.core import as_float32
from tfprune._masks.core import from_groups
from tfprune._masks.core import lowest_k_mask
from tfprune._masks.core import SHORT_ROW
from tfprune._masks.core import lowest_k_rows
from tfprune._masks.core import num_pruned
from tfprune._masks.core import to_groups
from tfprune._masks.units import UnitGroup
from tfprune._masks.units import UnitSlice
from tfprune._masks.units import expand_units
from tfprune._masks.units import prev_mask as _prev
from tfprune._masks.units import unit_totals

__all__ = [
    "Granularity", "Unstructured", "Block", "NM", "Units", "UnitSlice", "UnitGroup", "get",
]


_f32 = as_float32


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float32).reshape(-1)


def _shape_of(shapes, t):
    return tuple(int(d) for d in shapes[t])


class Granularity(_Config):
    """Base class: per-tensor decisions, one group per tensor.

    Subclasses implement `count` (host side, from shapes) and
    `group_masks_for` (pure); for `Global` allocation also `item_tensor`
    and `item_sizes`.
    """

    max_sparsity: float = 1.0
    structured: bool = False

    def check(self, sparsity) -> float:
        sparsity = check_sparsity("sparsity", sparsity)
        if sparsity > self.max_sparsity + 1e-9:
            raise ValueError(
                f"{self!r} allows a sparsity of at most {self.max_sparsity:g}. "
                f"{received('sparsity', sparsity)}"
            )
        return sparsity

    # ------------------------------------------------------ host side
    def count(self, group, shapes, sparsity) -> int:
        """Items of `group` (in each gate block) pruned at `sparsity`;
        `shapes[t]` is tensor `t`'s shape."""
        raise NotImplementedError

    def item_sizes(self, group, shapes):
        """Weights per item of `group`: one number, or a 1-D array aligned
        with `item_tensor`."""
        return 1.0

    # ------------------------------------------------------------ pure
    def group_masks_for(self, group, scores, count, previous_masks=None) -> dict:
        """`{tensor: mask}` pruning `count` items (an int or int tensor, as
        given by `count`) of `group`; pure `keras.ops`."""
        (sl,) = group.slices
        prev = _prev(previous_masks, sl.tensor)
        return {sl.tensor: self._mask_for(scores[sl.tensor], count, prev, sl.gates)}

    def _mask_for(self, scores, count, previous_mask, gates):
        raise NotImplementedError

    def masks_of_groups(self, groups, scores, counts, previous_masks=None) -> dict:
        """`{tensor: mask}` of several groups at once, each pruning its
        count: the same masks as `group_masks_for` on each group (pure).
        A granularity may select the groups together (`Unstructured` does
        for tensors of one size)."""
        masks = {}
        for group, count in zip(groups, counts):
            masks.update(self.group_masks_for(group, scores, count, previous_masks))
        return masks

    def item_tensor(self, group, scores, previous_masks=None):
        """The group's item scores as a 1-D float32 tensor, items already
        pruned by the previous masks at `-inf` (pure)."""
        (sl,) = group.slices
        s = ops.reshape(_f32(scores[sl.tensor]), (-1,))
        prev = _prev(previous_masks, sl.tensor)
        if prev is not None:
            s = ops.where(ops.reshape(_f32(prev), (-1,)) > 0, s, -np.inf)
        return s

    # ------------------------------------------------------- composed
    def mask(self, scores, sparsity, previous_mask=None, gates: int = 1):
        """New mask of one tensor (1 keeps, 0 prunes); same shape as `scores`."""
        group = UnitGroup("", (UnitSlice(0, -1, gates),))
        return self.group_masks(group, [_f32(scores)], sparsity, [previous_mask])[0]

    def group_masks(self, group, scores, sparsity, previous_masks=None) -> dict:
        """`{tensor: mask}` for the tensors of `group` at `sparsity`."""
        shapes = {t: _shape(scores[t]) for t in group.tensors}
        count = self.count(group, shapes, sparsity)
        return self.group_masks_for(group, scores, count, previous_masks)

    def item_scores(self, group, scores, previous_masks=None):
        """`(scores, sizes)`: the group's item scores as a 1-D float32 array
        (items already pruned by the previous mask score `-inf`) and the
        weights per item, one number when all items have the same size."""
        shapes = {t: _shape(scores[t]) for t in group.tensors}
        return _numpy(self.item_tensor(group, scores, previous_masks)), \
            self.item_sizes(group, shapes)


@keras.saving.register_keras_serializable("tfprune")
class Unstructured(Granularity):
    """Any weight may go: the lowest-scoring `round(n * sparsity)` are pruned.

    Recurrent kernels get one threshold per gate block (`gates`), each block
    losing exactly `round(n_block * sparsity)` weights.

    Example:

    >>> import numpy as np
    >>> np.asarray(Unstructured().mask(np.array([[3.0, 1.0, 2.0, 0.5]]), 0.5)).tolist()
    [[1.0, 0.0, 1.0, 0.0]]
    """

    def count(self, group, shapes, sparsity) -> int:
        (sl,) = group.slices
        return num_pruned(math.prod(_shape_of(shapes, sl.tensor)) // sl.gates,
                          self.check(sparsity))

    def _mask_for(self, scores, count, previous_mask, gates):
        scores = _f32(scores)
        shape = tuple(scores.shape)
        rows = to_groups(scores, gates)
        prev = None if previous_mask is None else to_groups(_f32(previous_mask), gates)
        return from_groups(lowest_k_mask(rows, count, prev), shape, gates)

    def masks_of_groups(self, groups, scores, counts, previous_masks=None) -> dict:
        """Tensors of one size without gate blocks are selected together:
        one row each, stacked (`lowest_k_rows`), the same masks as one by
        one."""
        if (type(self)._mask_for is not Unstructured._mask_for
                or type(self).group_masks_for is not Granularity.group_masks_for):
            # A subclass that selects its own way: one group at a time.
            return super().masks_of_groups(groups, scores, counts, previous_masks)
        alike, masks = {}, {}
        for group, count in zip(groups, counts):
            (sl,) = group.slices
            size = math.prod(_shape(scores[sl.tensor]))
            if sl.gates == 1 and 0 < size <= SHORT_ROW:
                alike.setdefault(size, []).append((group, count))
            else:
                masks.update(self.group_masks_for(group, scores, count, previous_masks))
        for size, members in alike.items():
            if len(members) == 1:
                (group, count), = members
                masks.update(self.group_masks_for(group, scores, count, previous_masks))
                continue
            members = [(group.slices[0].tensor, count) for group, count in members]
            rows = ops.concatenate([ops.reshape(_f32(scores[t]), (1, size)) for t, _ in members])
            prev = None
            if previous_masks is not None and any(previous_masks[t] is not None
                                                  for t, _ in members):
                prev = ops.concatenate([
                    ops.ones((1, size)) if previous_masks[t] is None
                    else ops.reshape(_f32(previous_masks[t]), (1, size)) for t, _ in members])
            counts_ = ops.stack([ops.cast(c, "int32") for _, c in members])
            keep = lowest_k_rows(rows, counts_, prev)
            for r, (t, _) in enumerate(members):
                masks[t] = ops.reshape(keep[r], _shape(scores[t]))
        return masks


def _check_reduction(reduction, allowed=("mean", "sum")):
    if reduction not in allowed:
        names = ", ".join(f"'{a}'" for a in allowed[:-1]) + f" or '{allowed[-1]}'"
        raise ValueError(
            f"`reduction` must be {names}. {received('reduction', reduction)}"
        )
    return reduction


def _shape(x) -> tuple:
    """The shape of a tensor, variable, array or nested list."""
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _split_gates(x, gates):
    return [x] if gates == 1 else ops.split(x, gates, axis=-1)


@keras.saving.register_keras_serializable("tfprune")
class Block(Granularity):
    """Prunes whole blocks of `block_shape` weights.

    The block covers the last axes of the kernel (leading axes get size 1).
    For a Dense kernel `(in, out)`, `Block((4, 1))` prunes 4 consecutive
    input rows of one output column: the 1x4 blocks TFLite runs, since the
    converter transposes Dense kernels. A block's score is the mean (or sum)
    of its members' scores; exactly `round(n_blocks * sparsity)` blocks are
    pruned. A dimension that the block does not divide ends in partial
    blocks, which are blocks like the others (scored over the members they
    have). A block is already pruned when all its members were. Gate blocks
    of recurrent kernels are blocked separately.

    Args:
        block_shape: tuple of positive ints. Defaults to `(4, 1)`.
        reduction: "mean" (default), "sum" or "max" of the member scores.

    Example:

    >>> import numpy as np
    >>> s = np.array([[1.0], [1.0], [9.0], [9.0]])
    >>> np.asarray(Block((2, 1)).mask(s, 0.5)).ravel().tolist()
    [0.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, block_shape=(4, 1), reduction: str = "mean"):
        if not isinstance(block_shape, (tuple, list)) or not block_shape or not all(
            isinstance(b, (int, np.integer)) and not isinstance(b, bool) and b > 0
            for b in block_shape
        ):
            raise ValueError(
                "`block_shape` must be a non-empty tuple of positive integers. "
                f"{received('block_shape', block_shape)}"
            )
        self.block_shape = tuple(int(b) for b in block_shape)
        self.reduction = _check_reduction(reduction, ("mean", "sum", "max"))

    def _tiling(self, shape):
        if len(self.block_shape) > len(shape):
            raise ValueError(
                f"`block_shape` {self.block_shape} has more axes than the tensor "
                f"{shape}. Received: shape={shape}"
            )
        block = (1,) * (len(shape) - len(self.block_shape)) + self.block_shape
        grid = tuple(math.ceil(d / b) for d, b in zip(shape, block))
        return block, grid

    def _to_blocks(self, x, shape, pad_value=0.0):
        """(n_blocks, block_size) view of `x`, padded to whole blocks."""
        block, grid = self._tiling(shape)
        pads = [(0, g * b - d) for d, b, g in zip(shape, block, grid)]
        x = ops.pad(_f32(x), pads, constant_values=pad_value)
        inter = [v for g, b in zip(grid, block) for v in (g, b)]
        x = ops.reshape(x, inter)
        n = len(shape)
        x = ops.transpose(x, [2 * i for i in range(n)] + [2 * i + 1 for i in range(n)])
        return ops.reshape(x, (math.prod(grid), math.prod(block)))

    def _block_scores(self, scores, prev, shape):
        if self.reduction == "max":  # scores are >= 0; padding never wins
            total = ops.max(self._to_blocks(scores, shape, pad_value=-np.inf), axis=1)
        else:
            total = ops.sum(self._to_blocks(scores, shape), axis=1)
        count = ops.sum(self._to_blocks(ops.ones(shape), shape), axis=1)
        if self.reduction == "mean":
            total = ops.divide(total, count)
        alive = None
        if prev is not None:
            alive = ops.cast(ops.sum(self._to_blocks(prev, shape), axis=1) > 0, "float32")
        return total, count, alive

    def _mask_one(self, scores, count, prev):
        shape = tuple(scores.shape)
        block, grid = self._tiling(shape)
        total, _, alive = self._block_scores(scores, prev, shape)
        keep = lowest_k_mask(total[None], count, None if alive is None else alive[None])
        keep = ops.reshape(keep, grid)
        for axis, b in enumerate(block):
            if b > 1:
                keep = ops.repeat(keep, b, axis=axis)
        keep = ops.slice(keep, [0] * len(shape), shape)
        return keep if prev is None else ops.multiply(keep, _f32(prev))

    @staticmethod
    def _gate_shape(shape, gates):
        return shape[:-1] + (shape[-1] // gates,)

    def count(self, group, shapes, sparsity) -> int:
        (sl,) = group.slices
        _, grid = self._tiling(self._gate_shape(_shape_of(shapes, sl.tensor), sl.gates))
        return num_pruned(math.prod(grid), self.check(sparsity))

    def _mask_for(self, scores, count, previous_mask, gates):
        parts = _split_gates(_f32(scores), gates)
        prevs = [None] * gates
        if previous_mask is not None:
            prevs = _split_gates(_f32(previous_mask), gates)
        masks = [self._mask_one(s, count, p) for s, p in zip(parts, prevs)]
        return masks[0] if gates == 1 else ops.concatenate(masks, axis=-1)

    def item_tensor(self, group, scores, previous_masks=None):
        (sl,) = group.slices
        prev = _prev(previous_masks, sl.tensor)
        parts = _split_gates(_f32(scores[sl.tensor]), sl.gates)
        prevs = [None] * sl.gates if prev is None else _split_gates(_f32(prev), sl.gates)
        out = []
        for s, p in zip(parts, prevs):
            total, _, alive = self._block_scores(s, p, tuple(s.shape))
            out.append(total if alive is None else ops.where(alive > 0, total, -np.inf))
        return out[0] if len(out) == 1 else ops.concatenate(out)

    def item_sizes(self, group, shapes):
        (sl,) = group.slices
        block, grid = self._tiling(self._gate_shape(_shape_of(shapes, sl.tensor), sl.gates))
        shape = self._gate_shape(_shape_of(shapes, sl.tensor), sl.gates)
        per_axis = [np.minimum(b, d - np.arange(g) * b) for d, b, g in zip(shape, block, grid)]
        sizes = per_axis[0]
        for a in per_axis[1:]:
            sizes = np.multiply.outer(sizes, a)
        return np.tile(np.asarray(sizes, np.float32).reshape(-1), sl.gates)

    def get_config(self) -> dict:
        return {"block_shape": list(self.block_shape), "reduction": self.reduction}


@keras.saving.register_keras_serializable("tfprune")
class NM(Granularity):
    """N:M sparsity: at most `n` of every `m` consecutive weights are kept.

    Groups are `m` consecutive weights along `axis` ("input": the kernel's
    input axis, -2, where 2:4 kernels expect them; "output": -1; or an int).
    The sparsity follows the schedule: at sparsity `s` the
    `round(n_groups * s / (1 - n/m))` groups whose `m - n` weakest weights
    score lowest are turned to N:M, so the total sparsity tracks `s`, and at
    `s = 1 - n/m` every group is exactly N:M. A turned group stays turned.
    If `m` does not divide the axis, the last group is partial: it keeps at
    most `n` of the weights it has (one with `n` or fewer is not counted).
    Sparsities above `1 - n/m` are an error.

    Args:
        n: weights kept per group. Defaults to 2.
        m: group size, `> n`. Defaults to 4.
        axis: "input" (default), "output" or an integer axis.

    Example:

    >>> import numpy as np
    >>> mask = NM(2, 4).mask(np.array([[4.0], [1.0], [3.0], [2.0]]), 0.5)
    >>> np.asarray(mask).ravel().tolist()
    [1.0, 0.0, 1.0, 0.0]
    """

    def __init__(self, n: int = 2, m: int = 4, axis="input"):
        rule = f"`n` and `m` must be integers with 0 < n < m. Received: n={n!r}, m={m!r}"
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m)):
            raise TypeError(rule)
        if not 0 < n < m:
            raise ValueError(rule)
        if isinstance(axis, str):
            if axis not in ("input", "output"):
                raise ValueError(
                    f"`axis` must be 'input', 'output' or an integer. {received('axis', axis)}")
        elif isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(
                f"`axis` must be 'input', 'output' or an integer. {received('axis', axis)}")
        self.n, self.m, self.axis = n, m, axis
        self.max_sparsity = 1.0 - n / m

    def _axis(self, ndim):
        if self.axis == "input":
            return -2 if ndim >= 2 else 0
        if self.axis == "output":
            return -1
        return self.axis

    def _grouped(self, scores, prev):
        """Scores as (groups, m) rows, pruned and padding entries at -inf."""
        scores = _f32(scores)
        shape = tuple(scores.shape)
        axis = self._axis(len(shape))
        s = ops.moveaxis(scores, axis, -1)
        if prev is not None:
            s = ops.where(ops.moveaxis(_f32(prev), axis, -1) > 0, s, -np.inf)
        moved = tuple(s.shape)
        pad = (-moved[-1]) % self.m
        s = ops.pad(s, [(0, 0)] * (len(moved) - 1) + [(0, pad)], constant_values=-np.inf)
        return ops.reshape(s, (-1, self.m)), moved, axis, pad

    def _removal(self, rows):
        """Per group: the m-n weakest members and their summed finite score."""
        k = self.m - self.n
        values, idx = backend.lowest_k(rows, k)  # of equal scores, the lower index goes
        finite = ops.where(ops.isfinite(values), values, 0.0)
        cost = ops.sum(finite, axis=1)
        turned = ops.all(ops.logical_not(ops.isfinite(values)), axis=1)
        return idx, ops.where(turned, -np.inf, cost), turned

    def _tiling(self, shape):
        """`(moved, pad, n_groups, free)` of a tensor of `shape`."""
        axis = self._axis(len(shape))
        moved = tuple(d for i, d in enumerate(shape) if i != axis % len(shape)) \
            + (shape[axis],)
        pad = (-moved[-1]) % self.m
        n_groups = math.prod(moved[:-1]) * (moved[-1] + pad) // self.m
        # Partial groups that padding alone makes N:M are free: not counted.
        free = n_groups * self.m // (moved[-1] + pad) if pad >= self.m - self.n else 0
        return moved, pad, n_groups, free

    def count(self, group, shapes, sparsity) -> int:
        (sl,) = group.slices
        sparsity = self.check(sparsity)
        _, _, n_groups, free = self._tiling(_shape_of(shapes, sl.tensor))
        return free + int(round((n_groups - free) * sparsity / self.max_sparsity))

    def _mask_for(self, scores, count, previous_mask, gates):
        rows, moved, axis, pad = self._grouped(scores, previous_mask)
        idx, cost, turned = self._removal(rows)
        untouched = ops.cast(ops.logical_not(turned), "float32")[None]
        keep_group = lowest_k_mask(cost[None], count, untouched)
        chosen = ops.sum(ops.one_hot(idx, self.m), axis=1)  # (groups, m)
        keep = ops.subtract(1.0, ops.multiply(chosen, ops.subtract(1.0, keep_group[0])[:, None]))
        keep = ops.reshape(keep, moved[:-1] + (moved[-1] + pad,))
        keep = ops.slice(keep, [0] * len(moved), moved)
        keep = ops.moveaxis(keep, -1, axis)
        return keep if previous_mask is None else ops.multiply(keep, _f32(previous_mask))

    def item_tensor(self, group, scores, previous_masks=None):
        (sl,) = group.slices
        rows, _, _, _ = self._grouped(_f32(scores[sl.tensor]), _prev(previous_masks, sl.tensor))
        return self._removal(rows)[1]

    def item_sizes(self, group, shapes):
        return float(self.m - self.n)

    def get_config(self) -> dict:
        return {"n": self.n, "m": self.m, "axis": self.axis}


@keras.saving.register_keras_serializable("tfprune")
class Units(Granularity):
    """Prunes whole units so that `tfprune.shrink` can remove them.

    A unit is a Dense output unit (kernel column), a convolution filter
    (last axis; `-2` for transposed convolutions), an embedding dimension,
    an attention head (query/key/value kernels `(dim, heads, head_dim)` and
    output kernel `(heads, head_dim, dim)`), or a recurrent hidden unit
    across all gates of the kernel and recurrent kernel, plus its row of
    the recurrent kernel and its bias entries. A unit's score combines all
    its members across the tensors of its `UnitGroup`; exactly
    `round(n_units * sparsity)` units are pruned. A unit is already pruned
    when all its members were. Biases of other layers are not masked.

    Args:
        reduction: "sum" (default: with `L1Norm`/`L2Norm`, the unit's norm)
            or "mean" of the member scores.

    Example:

    >>> import numpy as np
    >>> s = np.array([[1.0, 5.0, 2.0], [1.0, 5.0, 2.0]])
    >>> np.asarray(Units().mask(s, 1 / 3)).tolist()
    [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
    """

    structured = True

    def __init__(self, reduction: str = "sum"):
        self.reduction = _check_reduction(reduction)

    def _unit_scores(self, group, scores, previous_masks):
        total, count, alive = unit_totals(group, scores, previous_masks)
        return (ops.divide(total, count) if self.reduction == "mean" else total), alive

    @staticmethod
    def _units(group, shapes) -> int:
        sl = next(sl for sl in group.slices if sl.scored)
        return _shape_of(shapes, sl.tensor)[sl.axis] // sl.gates

    def count(self, group, shapes, sparsity) -> int:
        return num_pruned(self._units(group, shapes), self.check(sparsity))

    def group_masks_for(self, group, scores, count, previous_masks=None) -> dict:
        unit_scores, alive = self._unit_scores(group, scores, previous_masks)
        keep = lowest_k_mask(unit_scores[None], count, alive[None])[0]
        shapes = {sl.tensor: tuple(scores[sl.tensor].shape) for sl in group.slices}
        return expand_units(group, keep, shapes, previous_masks)

    def item_tensor(self, group, scores, previous_masks=None):
        unit_scores, alive = self._unit_scores(group, scores, previous_masks)
        return ops.where(alive > 0, unit_scores, -np.inf)

    def item_sizes(self, group, shapes):
        total = sum(math.prod(_shape_of(shapes, t)) for t in group.scored_tensors)
        return float(total / self._units(group, shapes))

    def get_config(self) -> dict:
        return {"reduction": self.reduction}


_ALIASES = {"unstructured": Unstructured, "block": Block, "nm": NM, "2:4": NM, "units": Units}


def get(identifier) -> Granularity:
    """Normalizes a granularity argument.

    Args:
        identifier: a `Granularity`, a name ("unstructured", "block",
            "nm" or "2:4", "units") or a serialized granularity (dict).

    Returns:
        A `Granularity`.

    Raises:
        ValueError: for an unknown name.
        TypeError: for any other type.

    Example:

    >>> get("2:4")
    NM(n=2, m=4, axis='input')
    """
    return lookup(
        identifier, Granularity, _ALIASES, "granularity", "a `tfprune.granularity.Granularity`"
    )
