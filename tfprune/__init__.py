"""tfprune: prune Keras 3 models while they train, ship them smaller.

Quickstart:

```python
import keras
import tfprune

pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.9, 0, 2000))
pruned.compile("adam", "mse")
pruned.fit(x, y, epochs=10, callbacks=[tfprune.PruningCallback()])
final = tfprune.strip(pruned)
print(tfprune.sparsity_report(final))
```
"""

from tfprune import criteria
from tfprune import export
from tfprune import granularity
from tfprune import oneshot
from tfprune import schedules
from tfprune import strategies
from tfprune._analysis.report import SparsityReport
from tfprune._analysis.report import sparsity_report
from tfprune._analysis.sensitivity import sensitivity
from tfprune._base.sensitivity_table import SensitivityTable
from tfprune._base.walk import register_prunable_layer
from tfprune._shrink import ShrinkReport
from tfprune._shrink import shrink
from tfprune._training.callback import PruningCallback
from tfprune._training.prune import prune
from tfprune._training.quality_guard import QualityGuard
from tfprune._training.strip import strip
from tfprune._training.wrapper import PruningWrapper
from tfprune._training.wrapper import find_wrappers
from tfprune.oneshot import prune_oneshot

__version__ = "0.2.0"

__all__ = [
    "PruningCallback",
    "PruningWrapper",
    "QualityGuard",
    "SensitivityTable",
    "ShrinkReport",
    "SparsityReport",
    "criteria",
    "export",
    "find_wrappers",
    "granularity",
    "oneshot",
    "prune",
    "prune_oneshot",
    "register_prunable_layer",
    "schedules",
    "sensitivity",
    "shrink",
    "sparsity_report",
    "strategies",
    "strip",
]
