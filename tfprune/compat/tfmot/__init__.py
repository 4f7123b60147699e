"""tfmot's pruning API on Keras 3: `import tfprune.compat.tfmot as tfmot`.

`tfmot.sparsity.keras` offers the public names of
`tensorflow_model_optimization.sparsity.keras` 0.8.1 with the same
signatures and defaults, running on tfprune's wrappers (so `tfprune.strip`,
`tfprune.export`, `tfprune.sparsity_report` work on the result too) and on
every Keras backend. docs/migration.md lists where behaviour differs.

Example:

```python
import tfprune.compat.tfmot as tfmot

schedule = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=1000)
pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
pruned.compile("adam", "mse")
pruned.fit(x, y, epochs=4, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
final = tfmot.sparsity.keras.strip_pruning(pruned)
```
"""

from tfprune.compat.tfmot import sparsity

# The tfmot release whose pruning API this module follows.
TFMOT_VERSION = "0.8.1"

__all__ = ["TFMOT_VERSION", "sparsity"]
