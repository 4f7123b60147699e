"""`Strategy`, `AutoStrategy` and the presets."""

from __future__ import annotations

import fnmatch

import keras

from tfprune import criteria as criteria_lib
from tfprune import granularity as granularity_lib
from tfprune._base import walk
from tfprune._base.config import _Config
from tfprune._base.validation import received
from tfprune._masks.units import UnitGroup
from tfprune._masks.units import UnitSlice
from tfprune.strategies._allocation import Global
from tfprune.strategies._allocation import Uniform
from tfprune.strategies._allocation import get as get_allocation
from tfprune.strategies._plan import Plan
from tfprune.strategies._plan import PlanGroup
from tfprune.strategies._structure import io_layers
from tfprune.strategies._structure import recurrent_biases
from tfprune.strategies._structure import unit_groups

__all__ = ["Strategy", "AutoStrategy", "dense", "recurrent", "regression", "auto", "get"]


# -------------------------------------------------------------- strategy
def _serialize(obj):
    return None if obj is None else keras.saving.serialize_keras_object(obj)


def _check_protect(protect):
    items = [protect] if isinstance(protect, str) else list(protect or ())
    if not all(isinstance(p, str) for p in items):
        raise TypeError(
            "`protect` must be a list of layer names, paths, class names or glob "
            f"patterns. {received('protect', protect)}"
        )
    return items


@keras.saving.register_keras_serializable("tfprune")
class Strategy(_Config):
    """How to prune: criterion, granularity, allocation and protected layers.

    Args:
        criterion: a `tfprune.criteria.Criterion` or its name. Defaults to
            "magnitude".
        granularity: a `tfprune.granularity.Granularity` or its name.
            Defaults to "unstructured".
        allocation: an allocation (`Uniform`, `Global`, `PerLayer`,
            `SensitivityAllocation`) or "uniform"/"global". Defaults to
            "uniform".
        protect: glob patterns; a layer is never pruned if its name, path,
            a component of its path or its class name matches one.
        protect_inputs: never prune the prunable layers nearest the model's
            inputs. Defaults to False.
        protect_outputs: never prune those nearest its outputs (the output
            head). Defaults to False.
        regularizer: optional `L1Regularizer`/`GroupLasso` pushing the
            weights about to be pruned toward zero.

    Example:

    ```python
    strategy = tfprune.strategies.Strategy(
        criterion="l2_norm", granularity="units",
        allocation=tfprune.strategies.Global(normalize="l2"), protect=["embedding"])
    pruned = tfprune.prune(model, 0.5, strategy=strategy)
    ```
    """

    def __init__(self, criterion="magnitude", granularity="unstructured", allocation="uniform",
                 protect=(), protect_inputs=False, protect_outputs=False, regularizer=None):
        self.criterion = criteria_lib.get(criterion)
        self.granularity = granularity_lib.get(granularity)
        self.allocation = get_allocation(allocation)
        self.protect = _check_protect(protect)
        self.protect_inputs, self.protect_outputs = bool(protect_inputs), bool(protect_outputs)
        if isinstance(regularizer, dict):
            regularizer = keras.saving.deserialize_keras_object(regularizer)
        if regularizer is not None and not callable(regularizer):
            raise TypeError(
                f"`regularizer` must be callable. {received('regularizer', regularizer)}"
            )
        self.regularizer = regularizer

    def resolve(self, model) -> Strategy:
        """The concrete strategy for `model` (itself; see `AutoStrategy`)."""
        return self

    def _matches(self, path, layer) -> bool:
        keys = [path, *path.split("/"), type(layer).__name__]
        return any(fnmatch.fnmatchcase(k, p) for p in self.protect for k in keys)

    def plan(self, model) -> Plan:
        """Applies the strategy to `model` (plain or already pruned)."""
        return self.plan_weights(model, walk.prunable_weights(model))

    def plan_weights(self, root, weights, *, io: bool = True) -> Plan:
        """Applies the strategy to some prunable weights of `root`.

        Args:
            root: the model or layer holding `weights` (names are relative
                to it; searched for attention layers).
            weights: its `PrunableWeight`s to plan for (with `Units`, the
                recurrent cells' biases are added).
            io: find the layers nearest the inputs and outputs of a model
                (protected by `protect_inputs`/`protect_outputs`; output
                units are never removed). False plans `weights` on their own.

        Returns:
            A `Plan` of the strategy resolved for `root`.
        """
        strategy = self.resolve(root)
        weights = list(weights)
        n_prunable = len(weights)
        if strategy.granularity.structured:
            weights = weights + recurrent_biases(weights)
        with_io = io and isinstance(root, keras.Model)
        ins, outs = io_layers(root) if with_io else (set(), set())
        rel = [walk.relative_path(pw.path, root.name) for pw in weights]
        top = [p.split("/")[0] for p in rel]
        head = {i for i, t in enumerate(top[:n_prunable]) if t in outs}
        per_tensor = [
            UnitGroup(pw.name, (UnitSlice(i, -1, pw.gates),))
            for i, pw in enumerate(weights[:n_prunable])
        ]
        if strategy.granularity.structured:  # output units would change the output shape
            groups = [g for g in unit_groups(weights, root) if not set(g.scored_tensors) & head]
            groups = sorted(groups + [per_tensor[i] for i in head], key=lambda g: min(g.tensors))
        else:
            groups = per_tensor
        # Group names are the weights' paths under `root`; two sub-blocks of
        # one user-given name repeat them, so repeats are numbered (`#2`).
        names = walk.unique_keys(walk.relative_path(g.name, root.name) for g in groups)
        planned = []
        for g, name in zip(groups, names):
            first = min(g.tensors)
            granularity = strategy.granularity
            if granularity.structured and first in head:
                granularity = granularity_lib.Unstructured()
            protected = any(
                strategy._matches(rel[t], weights[t].layer)
                or (strategy.protect_inputs and top[t] in ins)
                or (strategy.protect_outputs and top[t] in outs)
                for t in g.tensors
            )
            planned.append(PlanGroup(name, rel[first], g, granularity, protected))
        return Plan(strategy, weights, planned)

    def get_config(self) -> dict:
        return {
            "criterion": _serialize(self.criterion),
            "granularity": _serialize(self.granularity),
            "allocation": _serialize(self.allocation),
            "protect": list(self.protect),
            "protect_inputs": self.protect_inputs,
            "protect_outputs": self.protect_outputs,
            "regularizer": _serialize(self.regularizer),
        }

    def __repr__(self) -> str:
        parts = [f"criterion={self.criterion!r}", f"granularity={self.granularity!r}",
                 f"allocation={self.allocation!r}"]
        optional = ("protect", "protect_inputs", "protect_outputs", "regularizer")
        parts += [f"{k}={v!r}" for k in optional if (v := getattr(self, k))]
        return f"{type(self).__name__}({', '.join(parts)})"


def _has_rnn(model) -> bool:
    return any(isinstance(sub, keras.layers.RNN) for _, _, sub in walk.walk(model))


@keras.saving.register_keras_serializable("tfprune")
class AutoStrategy(Strategy):
    """Picks "recurrent" for models with an RNN layer, else "dense".

    Args:
        units: prune whole units (`Units` granularity) instead of single
            weights. Defaults to False.
        protect, protect_inputs, protect_outputs: as in `Strategy`.
    """

    def __init__(self, units=False, protect=(), protect_inputs=False, protect_outputs=False):
        super().__init__(
            protect=protect, protect_inputs=protect_inputs, protect_outputs=protect_outputs
        )
        self.units = bool(units)

    def resolve(self, model) -> Strategy:
        preset = recurrent if _has_rnn(model) else dense
        return preset(units=self.units, protect=self.protect, protect_inputs=self.protect_inputs,
                      protect_outputs=self.protect_outputs)

    def get_config(self) -> dict:
        return {"units": self.units, "protect": list(self.protect),
                "protect_inputs": self.protect_inputs, "protect_outputs": self.protect_outputs}

    def __repr__(self) -> str:
        return f"AutoStrategy(units={self.units}, protect_inputs={self.protect_inputs}, " \
               f"protect_outputs={self.protect_outputs})"


# --------------------------------------------------------------- presets
# Each preset is the method that measured best for its model family on the
# benchmark tasks (docs/benchmarks.json); docs/strategies.md quotes the
# figures and tests/project/test_preset_evidence.py checks them.
def dense(units: bool = False, **kwargs) -> Strategy:
    """Dense/Conv/Embedding models: one global magnitude ranking.

    Unstructured magnitude pruning with `Global()` allocation. With
    `units=True`, whole units ranked by L2 norm, every layer losing the same
    fraction of its units (`Uniform()`): a global ranking of units compares
    units of different sizes across layers and can empty a whole layer (see
    docs/strategies.md). `kwargs` go to `Strategy` (protection).
    """
    if units:
        return Strategy("l2_norm", granularity_lib.Units(), Uniform(), **kwargs)
    return Strategy("magnitude", "unstructured", Global(), **kwargs)


def recurrent(units: bool = False, **kwargs) -> Strategy:
    """Recurrent models: gate-aware global magnitude.

    One magnitude ranking across all the tensors (`Global()`) sets each
    tensor's sparsity; within a kernel or recurrent kernel each gate block
    then loses that fraction of its own weights, with its own threshold, so
    no gate is emptied because its weights happen to be smaller. This is
    the `"dense"` strategy; on the benchmark's LSTM it beats every tensor
    at the target (`Uniform()`) by far at high sparsity (see
    docs/strategies.md). With `units=True` whole hidden units go, across
    all gates and both kernels, ranked by L2 norm, every layer losing the
    same fraction of its units (`Uniform()`), so that `tfprune.shrink` can
    remove them. `kwargs` go to `Strategy` (protection).
    """
    return dense(units=units, **kwargs)


def regression(units: bool = False, **kwargs) -> Strategy:
    """Regression models: like "auto", but the input layers and the output
    head are never pruned. Meant to be used with `tfprune.QualityGuard`.

    A model whose only hidden layer is its input layer (an `LSTM -> Dense`
    regressor) has nothing left to prune: use "auto" with
    `protect_outputs=True` there."""
    kwargs.setdefault("protect_inputs", True)
    kwargs.setdefault("protect_outputs", True)
    return AutoStrategy(units=units, **kwargs)


def auto(units: bool = False, **kwargs) -> Strategy:
    """"recurrent" if the model holds an RNN layer, else "dense"."""
    return AutoStrategy(units=units, **kwargs)


_PRESETS = {"dense": dense, "recurrent": recurrent, "regression": regression, "auto": auto}


def get(identifier) -> Strategy:
    """Normalizes a strategy argument.

    Args:
        identifier: a `Strategy`, a preset name ("dense", "recurrent",
            "regression", "auto"), a serialized strategy (dict), or None
            ("auto").

    Returns:
        A `Strategy`.

    Raises:
        ValueError: for an unknown name.
        TypeError: for any other type.

    Example:

    >>> get("recurrent").allocation
    Global(normalize=None, min_sparsity=0.0, max_sparsity=None, protect_first=False, protect_last=False)
    """
    if identifier is None:
        return auto()
    if isinstance(identifier, Strategy):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in _PRESETS:
            raise ValueError(
                f"Unknown strategy; expected one of {sorted(_PRESETS)} or a "
                f"`tfprune.strategies.Strategy`. {received('strategy', identifier)}"
            )
        return _PRESETS[identifier.lower()]()
    if isinstance(identifier, dict):
        obj = keras.saving.deserialize_keras_object(identifier)
        if isinstance(obj, Strategy):
            return obj
    raise TypeError(
        f"`strategy` must be a preset name or a `tfprune.strategies.Strategy`. "
        f"{received('strategy', identifier)}"
    )
