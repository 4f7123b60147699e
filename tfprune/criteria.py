"""Pruning criteria: how important each weight is.

A criterion turns a weight tensor (and, for gradient-based criteria, a state
accumulated during training) into a tensor of scores of the same shape.
Higher scores are kept; the lowest are pruned first. A criterion does not
decide how many weights go or in which pattern: that is the granularity's
job (`tfprune.granularity`), given the scores.

Interface of every criterion:
- `score(weight, state=None, *, step=0, key=0) -> scores` (pure).
- `needs_gradients`: True if `accumulate` must be fed the gradients.
- `initial_state(weight)`: the state before any step (None if stateless).
- `accumulate(state, weight, gradient) -> state` (pure): called once per
  training step with the gradient of the loss with respect to `weight`.
- `reset_after_update`: True if the state starts again from
  `initial_state` after each mask update.

Gradients are handed in by the caller (a training step, or the gradient hook
`accumulate_on_backward`); criteria never compute them.

Regularizers (`L1Regularizer`, `GroupLasso`) are penalties that push the
weights about to be pruned toward zero before their mask drops them
(`Strategy(regularizer=...)`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfprune._base import backend
from tfprune._base.config import _Config
from tfprune._base.config import lookup
from tfprune._base.validation import received
from tfprune._masks.core import as_float32
from tfprune._masks.penalties import GroupLasso
from tfprune._masks.penalties import L1Regularizer

__all__ = [
    "Criterion",
    "Magnitude",
    "Random",
    "Taylor",
    "Movement",
    "L1Norm",
    "L2Norm",
    "L1Regularizer",
    "GroupLasso",
    "accumulate_on_backward",
    "get",
]


class Criterion(_Config):
    """Base class of criteria: maps a weight tensor to importance scores.

    Subclasses implement `score` and, if they learn from gradients, set
    `needs_gradients = True` and implement `accumulate`.

    Example:

    ```python
    @keras.saving.register_keras_serializable("my_project")
    class AbsCubed(tfprune.criteria.Criterion):
        def score(self, weight, state=None, *, step=0, key=0):
            return keras.ops.abs(weight) ** 3
    ```
    """

    needs_gradients: bool = False
    reset_after_update: bool = False
    #: False when `score` runs on the host (numpy) and cannot be traced
    #: into a compiled function; the mask update then feeds its scores in.
    traceable: bool = True

    def score(self, weight, state=None, *, step: int = 0, key: int = 0):
        """Scores of `weight`'s entries; higher is more important.

        Args:
            weight: the weight tensor.
            state: the accumulated state (gradient-based criteria only).
            step: the training step; only `Random` uses it.
            key: an integer that tells tensors apart (their position in the
                model); only `Random` uses it.

        Returns:
            A float32 tensor with the shape of `weight`.
        """
        raise NotImplementedError

    def initial_state(self, weight):
        """The state before any training step, or None if stateless."""
        if not self.needs_gradients:
            return None
        return ops.zeros(tuple(weight.shape), "float32")

    def accumulate(self, state, weight, gradient):
        """The state after one more step with `gradient` (pure)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not learn from gradients."
        )



_f32 = as_float32


@keras.saving.register_keras_serializable("tfprune")
class Magnitude(Criterion):
    """Absolute value of each weight: small weights are pruned first.

    Example:

    >>> import numpy as np
    >>> np.asarray(Magnitude().score(np.array([-2.0, 0.5]))).tolist()
    [2.0, 0.5]
    """

    def score(self, weight, state=None, *, step: int = 0, key: int = 0):
        return ops.abs(_f32(weight))


@keras.saving.register_keras_serializable("tfprune")
class Random(Criterion):
    """Uniform random scores: the baseline every criterion should beat.

    The scores depend only on `seed`, the step and the tensor's key, so a
    run is reproducible; two tensors of the same shape get different scores
    when their keys differ.

    Args:
        seed: integer seed. Defaults to 0.

    Example:

    >>> import numpy as np
    >>> a = Random(seed=1).score(np.zeros((3,)), step=5)
    >>> b = Random(seed=1).score(np.zeros((3,)), step=5)
    >>> bool(np.all(np.asarray(a) == np.asarray(b)))
    True
    """

    traceable = False

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer. {received('seed', seed)}")
        self.seed = int(seed)

    def score(self, weight, state=None, *, step: int = 0, key: int = 0):
        rng = np.random.default_rng([self.seed, int(step), int(key)])
        shape = tuple(ops.shape(ops.convert_to_tensor(weight)))
        return ops.convert_to_tensor(rng.random(shape, dtype=np.float32))

    def get_config(self) -> dict:
        return {"seed": self.seed}


class _GradientCriterion(Criterion):
    needs_gradients = True

    def score(self, weight, state=None, *, step: int = 0, key: int = 0):
        """The accumulated state; magnitude while nothing was accumulated."""
        magnitude = ops.abs(_f32(weight))
        if state is None:
            return magnitude
        state = _f32(state)
        return ops.where(ops.any(ops.not_equal(state, 0.0)), state, magnitude)


@keras.saving.register_keras_serializable("tfprune")
class Taylor(_GradientCriterion):
    """First-order Taylor importance |gradient x weight| (Molchanov et al.).

    `|g * w|` estimates how much the loss would change if the weight were
    removed. It is summed over the steps between two mask updates and starts
    again from zero after each update. Before any gradient has been
    accumulated the scores fall back to the weight magnitude.

    Example:

    >>> import numpy as np
    >>> t = Taylor()
    >>> w = np.array([1.0, -2.0, 3.0], "float32")
    >>> state = t.accumulate(t.initial_state(w), w, np.array([0.5, 0.1, 0.0], "float32"))
    >>> [round(float(v), 4) for v in np.asarray(t.score(w, state))]
    [0.5, 0.2, 0.0]
    """

    reset_after_update = True

    def accumulate(self, state, weight, gradient):
        return ops.add(_f32(state), ops.abs(ops.multiply(_f32(gradient), _f32(weight))))


@keras.saving.register_keras_serializable("tfprune")
class Movement(_GradientCriterion):
    """Movement pruning (Sanh et al., 2020): keep weights moving away from 0.

    The score accumulates `-gradient x weight` over all training steps: a
    weight whose updates push it away from zero gains score, one shrinking
    toward zero loses it. The state is never reset. Before any gradient has
    been accumulated the scores fall back to the weight magnitude.

    Example:

    >>> import numpy as np
    >>> m = Movement()
    >>> w = np.array([1.0, 1.0], "float32")
    >>> state = m.accumulate(m.initial_state(w), w, np.array([-1.0, 1.0], "float32"))
    >>> np.asarray(m.score(w, state)).tolist()
    [1.0, -1.0]
    """

    def accumulate(self, state, weight, gradient):
        return ops.subtract(_f32(state), ops.multiply(_f32(gradient), _f32(weight)))


@keras.saving.register_keras_serializable("tfprune")
class L1Norm(Criterion):
    """L1 norm of a unit: per weight `|w|`, summed over the unit's weights.

    Meant for structured granularities (`Units`, `Block` with
    `reduction="sum"`): a unit's score is the sum of its members' scores, so
    it is the unit's L1 norm. Used unstructured it ranks like `Magnitude`.
    """

    def score(self, weight, state=None, *, step: int = 0, key: int = 0):
        return ops.abs(_f32(weight))


@keras.saving.register_keras_serializable("tfprune")
class L2Norm(Criterion):
    """L2 norm of a unit: per weight `w**2`, summed over the unit's weights.

    The summed score is the squared L2 norm of the unit, which ranks units
    exactly like the L2 norm (also across the several tensors of a unit
    group, where the squares add up).
    """

    def score(self, weight, state=None, *, step: int = 0, key: int = 0):
        w = _f32(weight)
        return ops.multiply(w, w)


_ALIASES = {
    "magnitude": Magnitude,
    "random": Random,
    "taylor": Taylor,
    "movement": Movement,
    "l1": L1Norm,
    "l1_norm": L1Norm,
    "l2": L2Norm,
    "l2_norm": L2Norm,
}


def get(identifier) -> Criterion:
    """Normalizes a criterion argument.

    Args:
        identifier: a `Criterion`, its name ("magnitude", "random",
            "taylor", "movement", "l1_norm", "l2_norm") or a serialized
            criterion (dict).

    Returns:
        A `Criterion`.

    Raises:
        ValueError: for an unknown name.
        TypeError: for any other type.

    Example:

    >>> get("taylor")
    Taylor()
    """
    return lookup(identifier, Criterion, _ALIASES, "criterion", "a `tfprune.criteria.Criterion`")


# ------------------------------------------------------------ gradient hook
def accumulate_on_backward(value, state, criterion: Criterion, weight=None):
    """Identity whose backward pass feeds the gradient to `criterion`.

    Returns `value` unchanged; the gradient passes through untouched. This
    is how a layer collects Taylor or movement scores during `model.fit`
    without a custom training step:

    - TensorFlow and PyTorch: when a gradient flows back through the
      result, `state` is assigned `criterion.accumulate(state, weight,
      gradient)`.
    - JAX (pure, no assignment in a backward pass): the backward pass gives
      `criterion.accumulate(state, weight, gradient)` as the *gradient of
      `state`*. Make `state` a trainable variable with
      `overwrite_with_gradient=True` and the optimizer writes that value
      into it instead of taking a step (Keras' own mechanism for values
      computed in a backward pass; such a variable gets no optimizer slots,
      no clipping and no weight decay).

    Args:
        value: the (masked) weight as used in the forward pass.
        state: the `keras.Variable` holding the criterion's state.
        criterion: a criterion with `needs_gradients`.
        weight: the weight fed to `accumulate`; defaults to `value`.

    Returns:
        A tensor equal to `value`.
    """
    weight = value if weight is None else weight
    return backend.identity_on_backward(value, state, criterion.accumulate, weight)
