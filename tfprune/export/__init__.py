"""Export pruned Keras models: SavedModel and TFLite, verified and atomic.

```python
import tfprune

final = tfprune.strip(pruned)  # optional: the exporters strip wrappers too
print(tfprune.export.saved_model(final, "exported_model"))
print(tfprune.export.tflite(final, "model.tflite", quantize="dynamic"))
print(tfprune.export.inspect("model.tflite"))
```

Every export is written next to its destination, checked (outputs against
the Keras model, sparsity of the pruned tensors) and only then moved into
place; an existing destination is replaced only with `overwrite=True`. A
full disk or another file-system failure raises `ExportWriteError` and
leaves the destination as it was.
"""

from tfprune.export._inspect import Inspection
from tfprune.export._inspect import inspect
from tfprune.export._result import ExportError
from tfprune.export._result import ExportResult
from tfprune.export._result import ExportWriteError
from tfprune.export._saved_model import saved_model
from tfprune.export._tflite import TOLERANCES
from tfprune.export._tflite import tflite

__all__ = [
    "ExportError",
    "ExportResult",
    "ExportWriteError",
    "Inspection",
    "TOLERANCES",
    "inspect",
    "saved_model",
    "tflite",
]
