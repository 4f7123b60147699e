"""`tfmot.sparsity.keras`: tfmot 0.8.1's pruning API on Keras 3.

`import tfprune.compat.tfmot as tfmot`, then `tfmot.sparsity.keras.X` for
every public name of `tensorflow_model_optimization.sparsity.keras` 0.8.1:
`prune_low_magnitude`, `prune_scope`, `strip_pruning`,
`UpdatePruningStep`, `PruningSummaries`, `PruningSchedule`,
`ConstantSparsity`, `PolynomialDecay`, `PrunableLayer`, `PruningPolicy`,
`PruneForLatencyOnXNNPack`; `PruneLowMagnitude` is the wrapper class.
"""

from tfprune.compat.tfmot._callbacks import PruningSummaries
from tfprune.compat.tfmot._callbacks import UpdatePruningStep
from tfprune.compat.tfmot._policy import PruneForLatencyOnXNNPack
from tfprune.compat.tfmot._policy import PruningPolicy
from tfprune.compat.tfmot._prune import prune_low_magnitude
from tfprune.compat.tfmot._prune import prune_scope
from tfprune.compat.tfmot._prune import strip_pruning
from tfprune.compat.tfmot._schedules import ConstantSparsity
from tfprune.compat.tfmot._schedules import PolynomialDecay
from tfprune.compat.tfmot._schedules import PruningSchedule
from tfprune.compat.tfmot._wrapper import PrunableLayer
from tfprune.compat.tfmot._wrapper import PruneLowMagnitude

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruneLowMagnitude",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
]
