"""Units and unit groups: the pure math of structured masks.

A *unit* is what `tfprune.shrink` can remove: a Dense output unit, a
convolution filter, an attention head, a recurrent hidden unit. One unit
can span several tensors (an LSTM unit is four columns of its kernel and of
its recurrent kernel, one row of the recurrent kernel and four bias
entries), so decisions are taken per *unit group*:

- `UnitSlice` / `UnitGroup`: which axis of which tensor holds the units;
- `unit_totals` / `expand_units`: pure `keras.ops` math from scores to one
  total per unit, and from one keep flag per unit back to tensor masks.

Which tensors form a group in a model is `tfprune.strategies._structure`.
"""

from __future__ import annotations

import dataclasses

from keras import ops

from tfprune._masks.core import as_float32

__all__ = ["UnitSlice", "UnitGroup", "unit_totals", "expand_units", "prev_mask"]


@dataclasses.dataclass(frozen=True)
class UnitSlice:
    """One tensor's share of a unit group.

    Attributes:
        tensor: index of the tensor in the list of scores and masks.
        axis: the axis of that tensor holding the units.
        gates: the axis holds `gates` blocks of `units` entries each; unit
            `j` is entries `j, j + units, ...` (LSTM: 4, GRU: 3).
        scored: False for a tensor that is masked with the units but does
            not score them (a recurrent cell's bias).
    """

    tensor: int
    axis: int = -1
    gates: int = 1
    scored: bool = True


@dataclasses.dataclass(frozen=True)
class UnitGroup:
    """Tensors whose units are pruned together, under one name."""

    name: str
    slices: tuple

    @property
    def tensors(self) -> list:
        return sorted({s.tensor for s in self.slices})

    @property
    def scored_tensors(self) -> list:
        return sorted({s.tensor for s in self.slices if s.scored})


# ------------------------------------------------------------ unit math
_f32 = as_float32


def prev_mask(previous_masks, i):
    """`previous_masks[i]`, or None when there is none."""
    if previous_masks is None:
        return None
    try:
        return previous_masks[i]
    except (KeyError, IndexError):
        return None


def _per_unit(x, sl):
    """Sum of `x` over everything but the units of slice `sl`."""
    x = _f32(x)
    shape = tuple(x.shape)
    length = shape[sl.axis]
    if length % sl.gates:
        raise ValueError(
            f"Axis {sl.axis} of a tensor of shape {shape} does not split into "
            f"{sl.gates} gates. Received: gates={sl.gates}"
        )
    x = ops.moveaxis(x, sl.axis, -1)
    x = ops.reshape(x, (-1, sl.gates, length // sl.gates))
    return ops.sum(ops.sum(x, axis=0), axis=0)


def unit_totals(group, scores, previous_masks=None):
    """`(total, count, alive)`: per unit of `group`, the summed scores of its
    scored members, their number, and 1.0 if any was kept by the previous
    masks (0.0 if the unit is already pruned)."""
    total = count = alive = None
    for sl in (sl for sl in group.slices if sl.scored):
        s = _f32(scores[sl.tensor])
        prev = prev_mask(previous_masks, sl.tensor)
        part = _per_unit(s, sl)
        n = _per_unit(ops.ones(tuple(s.shape)), sl)
        a = n if prev is None else _per_unit(prev, sl)
        if total is not None and tuple(part.shape) != tuple(total.shape):
            raise ValueError(
                f"The tensors of unit group '{group.name}' disagree on the number "
                f"of units. Received: group={group!r}"
            )
        total = part if total is None else ops.add(total, part)
        count = n if count is None else ops.add(count, n)
        alive = a if alive is None else ops.add(alive, a)
    return total, count, ops.cast(alive > 0, "float32")


def expand_units(group, keep, shapes, previous_masks=None) -> dict:
    """`{tensor: mask}`: one keep flag per unit spread over every slice of
    `group` (`shapes[t]` is tensor `t`'s shape), times the previous mask."""
    out = {}
    for sl in group.slices:
        shape = tuple(shapes[sl.tensor])
        if sl.tensor not in out:
            prev = prev_mask(previous_masks, sl.tensor)
            out[sl.tensor] = ops.ones(shape) if prev is None else _f32(prev)
        bshape = [1] * len(shape)
        bshape[sl.axis % len(shape)] = shape[sl.axis]
        factor = ops.reshape(ops.tile(keep, (sl.gates,)), bshape)
        out[sl.tensor] = ops.multiply(out[sl.tensor], factor)
    return out
