"""`tfmot.sparsity`: the pruning API lives in `tfmot.sparsity.keras`."""

from tfprune.compat.tfmot.sparsity import keras

__all__ = ["keras"]
