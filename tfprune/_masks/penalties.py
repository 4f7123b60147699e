"""Penalties that push the weights about to be pruned toward zero.

`L1Regularizer` and `GroupLasso` (public in `tfprune.criteria`) are called as
`penalty(weight, mask_to_be)`, where `mask_to_be` is the mask the next update
will give; `Strategy(regularizer=...)` makes the wrappers add the penalty to
the loss while training.
"""

from __future__ import annotations

import keras
from keras import ops

from tfprune._base.config import _Config
from tfprune._base.validation import received
from tfprune._masks.core import as_float32 as _f32

__all__ = ["L1Regularizer", "GroupLasso"]


class _Penalty(_Config):
    def __init__(self, strength: float):
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise TypeError(f"`strength` must be a number >= 0. {received('strength', strength)}")
        if not strength >= 0:  # NaN too
            raise ValueError(f"`strength` must be a number >= 0. {received('strength', strength)}")
        self.strength = float(strength)

    def get_config(self) -> dict:
        return {"strength": self.strength}


@keras.saving.register_keras_serializable("tfprune")
class L1Regularizer(_Penalty):
    """L1 penalty on the weights that the next mask update will prune.

    `penalty = strength * sum(|w| * (1 - mask_to_be))`: the weights doomed
    by the coming update are pulled toward zero first, so removing them
    costs less. Weights that stay are not penalized.

    Give it to a strategy, `Strategy(regularizer=L1Regularizer(1e-4))`: the
    pruning callback then keeps the mask of the next update (`mask_to_be`)
    and the wrappers add the penalty to the loss while training.

    Args:
        strength: multiplier of the penalty, `>= 0`.

    Example:

    >>> import numpy as np
    >>> reg = L1Regularizer(0.1)
    >>> round(float(reg(np.array([1.0, -2.0]), np.array([0.0, 1.0]))), 6)
    0.1
    """

    def __call__(self, weight, mask_to_be):
        w = _f32(weight)
        doomed = ops.subtract(1.0, _f32(mask_to_be))
        return ops.multiply(self.strength, ops.sum(ops.abs(ops.multiply(w, doomed))))


@keras.saving.register_keras_serializable("tfprune")
class GroupLasso(_Penalty):
    """Group-lasso penalty on the units that the next update will remove.

    `penalty = strength * sum_j ||w_j * (1 - mask_to_be_j)||_2` over the
    units `j` along `axis` (Dense output units: `axis=-1`). The L2 norm of a
    whole unit pushes it to zero as a group, which suits `Units`
    granularity. It plugs in like `L1Regularizer`.

    Args:
        strength: multiplier of the penalty, `>= 0`.
        axis: the axis holding the units. Defaults to -1.

    Example:

    >>> import numpy as np
    >>> reg = GroupLasso(1.0)
    >>> w = np.array([[3.0, 1.0], [4.0, 1.0]])
    >>> round(float(reg(w, np.array([[0.0, 1.0], [0.0, 1.0]]))), 4)
    5.0
    """

    def __init__(self, strength: float, axis: int = -1):
        super().__init__(strength)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"`axis` must be an integer. {received('axis', axis)}")
        self.axis = axis

    def __call__(self, weight, mask_to_be):
        w = ops.multiply(_f32(weight), ops.subtract(1.0, _f32(mask_to_be)))
        w = ops.moveaxis(w, self.axis, -1)
        squares = ops.sum(ops.reshape(ops.multiply(w, w), (-1, w.shape[-1])), axis=0)
        return ops.multiply(self.strength, ops.sum(ops.sqrt(ops.add(squares, 1e-12))))

    def get_config(self) -> dict:
        return {"strength": self.strength, "axis": self.axis}
