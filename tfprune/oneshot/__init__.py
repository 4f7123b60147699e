"""One-shot pruning of trained models from calibration data.

`tfprune.prune_oneshot(model, method, data)` prunes a trained model without
retraining, with one of the methods here:

- `Magnitude`: the smallest weights go (no data needed);
- `Wanda` (Sun et al., 2023): weights scored by `|W| * ||X||`, their
  magnitude times the norm of their input feature on the data;
- `SparseGPT` (Frantar & Alistarh, 2023): the weights that matter least to
  the layer's output go, and the others are updated to make up for them.

Each takes a sparsity and a granularity (`Unstructured`, `NM(n, m)`,
`Block` for the first two) and is serializable like every other tfprune
config. See docs/oneshot.md.
"""

from tfprune.oneshot._api import prune_oneshot
from tfprune.oneshot._methods import Magnitude
from tfprune.oneshot._methods import OneShotMethod
from tfprune.oneshot._methods import SparseGPT
from tfprune.oneshot._methods import Wanda
from tfprune.oneshot._methods import get
from tfprune.oneshot._report import OneShotReport

__all__ = ["Magnitude", "OneShotMethod", "OneShotReport", "SparseGPT", "Wanda", "get",
           "prune_oneshot"]
