"""The state a `PruningWrapper` keeps: masks, step, and the strategy's extras.

`create_state` adds the wrapper's variables (their order is the save
format: one mask per pruned weight, the pruning step, then the extras the
strategy needs) and puts a `_MaskConstraint` on every masked variable.
`tfprune._training.update.MaskUpdate` assigns new masks.

Results about the masked tensors (zero counts, layer names for errors) are
keyed by each slot's `key`, its variable's path made unique among a model's
masked tensors (`key_slots`), never by `id(variable)`.

The training signals between the runtime's objects live here too, in the
open rather than as attributes set on each other's objects: which wrappers
a pruning callback is training (`attach`, `detach`, `is_attached`; a
wrapper refuses to train without one) and how often a model's masks and
steps were restored from elsewhere (`notify_restored`, `restore_count`;
`QualityGuard` restores, `PruningCallback` reads them again).
"""

from __future__ import annotations

import dataclasses
import re
import weakref

import keras

from tfprune._base import backend
from tfprune._base import keras_internals
from tfprune._base.walk import unique_keys
from tfprune._masks.core import apply_mask
from tfprune._masks.core import zeros_in
from tfprune.strategies._structure import recurrent_biases


class _MaskConstraint(keras.constraints.Constraint):
    """Variable constraint that zeroes pruned weights after every update.

    Keras optimizers apply `variable.constraint` after each step, so weights
    pruned by the mask stay exactly zero in the variable itself; a model
    saved at any moment is as sparse as its masks. A constraint the user set
    on the variable runs first. (A `keras.constraints.Constraint`: Keras
    3.12 accepts nothing else on a variable. It lives on the variable
    only, never in a layer's config.)
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return apply_mask(w, self.mask)


@dataclasses.dataclass
class Slot:
    """The state a wrapper keeps for one masked tensor.

    Attributes:
        weight: the `PrunableWeight`.
        mask: its mask variable.
        score: the criterion's state variable (gradient criteria), or None.
        next_mask: the mask of the next update (with a regularizer), or None.
        counted: False for a recurrent bias masked with its units (`Units`):
            not a pruned weight, left out of the sparsity totals.
        key: the key of the tensor's results (zero counts, layer names):
            its variable's path, unique among the slots given to
            `key_slots` (those of its wrapper when it is created, those of
            the whole model when `PruningCallback` trains it). Defaults to
            the variable's path.
    """

    weight: object
    mask: object
    score: object = None
    next_mask: object = None
    counted: bool = True
    key: str = ""

    def __post_init__(self):
        if not self.key:
            self.key = self.weight.variable.path


def _variable_name(pw, suffix) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{pw.name}_{suffix}")


def _add_state(layer, pw, suffix, initializer, dtype=None, written_by_gradient=False):
    # JAX's `fit` is pure: a gradient criterion's score cannot be assigned in
    # the backward pass. There it is a trainable variable that the optimizer
    # overwrites with its "gradient", the accumulated score
    # (`criteria.accumulate_on_backward`).
    overwrite = written_by_gradient and backend.scores_written_by_optimizer()
    variable = layer.add_weight(
        name=_variable_name(pw, suffix),
        shape=pw.variable.shape,
        dtype=dtype or pw.variable.dtype,
        initializer=initializer,
        trainable=overwrite,
        aggregation="only_first_replica",
        overwrite_with_gradient=overwrite,
    )
    _lay_out_like(variable, pw.variable)
    return variable


def _lay_out_like(variable, weight) -> None:
    """Gives a per-weight variable (mask, score) the layout of its weight.

    Under `keras.distribution.ModelParallel` (JAX) a `LayoutMap` shards the
    kernels it names; the wrapper's variables have other paths, so they
    would be replicated on every device. Laid out like the kernel, each
    device holds the mask of its own shard, and every update is assigned
    in that layout (`Variable.assign` distributes to `_layout`).
    """
    keras_internals.copy_layout(weight, variable)


def state_variables(layer) -> list:
    """The variables `create_state` added to `layer`, in creation order.

    This order is the save format (`.keras`, `.weights.h5`) on every
    backend: Keras would list trainable variables first, and a score is
    trainable on JAX only.
    """
    slots = layer.slots
    counted = [s for s in slots if s.counted]
    ordered = [s.mask for s in counted] + [layer.pruning_step]
    ordered += [s.mask for s in slots if not s.counted]
    for slot in counted:
        ordered += [v for v in (slot.score, slot.next_mask) if v is not None]
    return ordered


def create_state(layer, pruned, strategy) -> tuple:
    """Adds to `layer` (the wrapper) the variables for the weights `pruned`.

    Args:
        layer: the `PruningWrapper`.
        pruned: its `PrunableWeight`s.
        strategy: the resolved `Strategy`: with `Units`, the recurrent cells'
            biases get masks too; a gradient criterion adds a score per
            weight; a regularizer the mask of the next update.

    Returns:
        `(masks, pruning_step, slots, original_constraints)`.
    """
    biases = recurrent_biases(pruned) if strategy.granularity.structured else []
    with keras_internals.unlocked_tracker(layer):
        # Variable order is the save format: masks, step, then extras.
        masks = [_add_state(layer, pw, "mask", "ones") for pw in pruned]
        step = layer.add_weight(
            name="pruning_step",
            shape=(),
            dtype=backend.step_dtype(),
            initializer=keras.initializers.Constant(-1),
            trainable=False,
            aggregation="only_first_replica",
        )
        slots = [Slot(pw, m) for pw, m in zip(pruned, masks)]
        slots += [Slot(pw, _add_state(layer, pw, "mask", "ones"), counted=False)
                  for pw in biases]
        for slot in slots[:len(pruned)]:
            if strategy.criterion.needs_gradients:
                slot.score = _add_state(layer, slot.weight, "score", "zeros", "float32",
                                        written_by_gradient=True)
            if strategy.regularizer is not None:
                slot.next_mask = _add_state(layer, slot.weight, "next_mask", "ones")
    key_slots(slots)
    originals = []
    # Where the optimizer cannot see the masks (JAX), pruned weights are
    # held by the forward mask (zero output, zero gradient) and zeroed at
    # every update and by `strip`; between updates the variable may drift
    # (momentum), which nothing reads unmasked.
    constrain = backend.optimizer_applies_constraints()
    for slot in slots:
        variable = slot.weight.variable
        originals.append(variable.constraint)
        if constrain:
            variable.constraint = _MaskConstraint(slot.mask, variable.constraint)
    return masks, step, slots, originals


# --------------------------------------------------------------------- keys
def key_slots(slots) -> dict:
    """Gives each of `slots` its result key (`Slot.key`): its variable's
    path, made unique among `slots` by `unique_keys` in their order (a
    model's: its wrappers in `find_wrappers` order, each wrapper's `slots`
    in order). Keys are computed here once; an update only looks them up.

    Keras variable paths can repeat within a model (layers of the same name
    built outside a parent's name scope), so paths alone cannot key results.

    Returns:
        `{key: slot}`, in the order of `slots`.
    """
    slots = list(slots)
    for slot, key in zip(slots, unique_keys(s.weight.variable.path for s in slots)):
        slot.key = key
    return {slot.key: slot for slot in slots}


# -------------------------------------------------------------------- zeros
def masked_zeros(pw, mask) -> int:
    """Zeros of the pruned weight `pw` as its `mask` leaves it (read from
    the variable)."""
    return int(keras.ops.convert_to_numpy(zeros_in(apply_mask(pw.variable.value, mask))))


def count_zeros(wrappers) -> dict:
    """`{key: zeros}` (`Slot.key`) of every weight the wrappers prune
    (reads them all: once per `fit`, after masks were restored, or at the
    end of a `fit` whose updates ran inside the train step)."""
    return {slot.key: masked_zeros(slot.weight, slot.mask)
            for w in wrappers for slot in w.slots if slot.counted}


# ------------------------------------------------------------------ signals
#: Wrappers a pruning callback is training.
_ATTACHED = weakref.WeakSet()
#: `{model: how many times its masks and steps were restored}`.
_RESTORES = weakref.WeakKeyDictionary()


def attach(wrappers) -> None:
    """Marks `wrappers` as trained by a pruning callback (at train begin)."""
    _ATTACHED.update(wrappers)


def detach(wrappers) -> None:
    """Ends `attach` (at train end)."""
    for wrapper in wrappers:
        _ATTACHED.discard(wrapper)


def is_attached(wrapper) -> bool:
    """Whether a pruning callback is training `wrapper`."""
    return wrapper in _ATTACHED


def notify_restored(model) -> None:
    """Says that `model`'s masks and pruning steps were assigned from
    elsewhere (a snapshot): pruning callbacks read them again."""
    _RESTORES[model] = _RESTORES.get(model, 0) + 1


def restore_count(model) -> int:
    """How many times `notify_restored(model)` was called."""
    return _RESTORES.get(model, 0)
