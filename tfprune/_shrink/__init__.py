"""`tfprune.shrink`: physically remove dead units from a Keras model.

Modules:
- `_graph`: the channel classes and which of them can go (the union-find of
  `tfprune._base.channels`, with constant values and carriers).
- `_surgery`: the per-layer surgery interface (shrink's half of the channel
  rules of `tfprune._base.channel_rules`, whose registry `register_surgery`
  adds to) and the layers without units (activations, pooling, reshaping,
  merges, BatchNormalization).
- `_weighted`: Dense, Conv1D/2D/3D, DepthwiseConv1D/2D, Embedding,
  TimeDistributed.
- `_recurrent`: SimpleRNN, LSTM, GRU, Bidirectional.
- `_core`: `shrink` itself: analysis, re-wiring, verification.
- `_report`: `ShrinkReport`.
"""

from tfprune._shrink import _recurrent  # noqa: F401  (extends its rules)
from tfprune._shrink import _weighted  # noqa: F401  (extends its rules)
from tfprune._shrink._core import shrink
from tfprune._shrink._report import ShrinkReport
from tfprune._shrink._surgery import Rebuilt
from tfprune._shrink._surgery import Surgery
from tfprune._shrink._surgery import register_surgery

__all__ = ["Rebuilt", "ShrinkReport", "Surgery", "register_surgery", "shrink"]
