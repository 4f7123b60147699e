"""Small pruned models of every kind the export tests cover, and inputs."""

import keras
import numpy as np

import tfprune
from tfprune import find_wrappers

L = keras.layers
SPARSITY = 0.8
MODELS = ["mlp", "conv1d", "embedding", "lstm", "gru", "bilstm"]


def build(kind):
    if kind == "mlp":
        return keras.Sequential([keras.Input((8,)), L.Dense(32, activation="relu"), L.Dense(1)])
    if kind == "conv1d":
        return keras.Sequential(
            [keras.Input((12, 3)), L.Conv1D(8, 3, activation="relu"), L.GlobalAveragePooling1D(), L.Dense(2)]
        )
    if kind == "embedding":
        return keras.Sequential(
            [keras.Input((10,), dtype="int32"), L.Embedding(50, 8), L.GlobalAveragePooling1D(), L.Dense(2)]
        )
    if kind == "lstm":  # stacked, the first returning sequences
        return keras.Sequential(
            [keras.Input((6, 4)), L.LSTM(8, return_sequences=True), L.LSTM(8), L.Dense(1)]
        )
    if kind == "gru":
        return keras.Sequential([keras.Input((6, 4)), L.GRU(8), L.Dense(1)])
    return keras.Sequential([keras.Input((6, 4)), L.Bidirectional(L.LSTM(8)), L.Dense(1)])


def pruned(kind, sparsity=SPARSITY):
    pruned = tfprune.prune(build(kind), sparsity)
    for wrapper in find_wrappers(pruned):
        wrapper.prune_to(sparsity)
    return pruned


def inputs(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "embedding":
        return rng.integers(0, 50, (n, 10)).astype("int32")
    shape = {"mlp": (8,), "conv1d": (12, 3)}.get(kind, (6, 4))
    return rng.standard_normal((n,) + shape).astype("float32")
