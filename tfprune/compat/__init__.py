"""Compatibility layers for programs written for other pruning tools.

`tfprune.compat.tfmot` runs programs written for TensorFlow Model
Optimization's pruning API (`tfmot.sparsity.keras`, version 0.8.1) on
Keras 3, with one changed import:

```python
import tfprune.compat.tfmot as tfmot          # was: import tensorflow_model_optimization as tfmot
```
"""
