"""Pruning strategies: criterion + granularity + allocation + protection.

A `Strategy` is a serializable bundle of the pluggable pieces:

- a criterion (`tfprune.criteria`): which weights matter;
- a granularity (`tfprune.granularity`): the pattern pruned weights form;
- an allocation: how an overall target is split across tensors;
- protection: layers that are never pruned.

`Strategy.plan(model)` applies it to a model: it finds the prunable tensors,
groups them (unit groups for `Units`, from `tfprune.strategies._structure`), picks the
granularity of each group (layers producing a model output are never
unit-pruned) and marks the protected ones. `Plan.compute_masks(sparsity,
...)` then gives every mask; `PruningCallback` calls it at each update with
the wrappers' masks and criterion states.

Presets: "dense", "recurrent", "regression", "auto" (see `get`).
"""

from tfprune._base.sensitivity_table import SensitivityTable
from tfprune.strategies._allocation import Allocation
from tfprune.strategies._allocation import Candidate
from tfprune.strategies._allocation import Global
from tfprune.strategies._allocation import PerLayer
from tfprune.strategies._allocation import Uniform
from tfprune.strategies._plan import Plan
from tfprune.strategies._sensitivity import SensitivityAllocation
from tfprune.strategies._strategy import AutoStrategy
from tfprune.strategies._strategy import Strategy
from tfprune.strategies._strategy import auto
from tfprune.strategies._strategy import dense
from tfprune.strategies._strategy import get
from tfprune.strategies._strategy import recurrent
from tfprune.strategies._strategy import regression
from tfprune.strategies._structure import io_layers
from tfprune.strategies._structure import recurrent_biases
from tfprune.strategies._structure import unit_groups

__all__ = [
    "Strategy", "AutoStrategy", "Plan", "Allocation", "Candidate", "Uniform", "Global",
    "PerLayer", "SensitivityAllocation", "SensitivityTable", "dense", "recurrent",
    "regression", "auto", "get", "unit_groups", "recurrent_biases", "io_layers",
]
