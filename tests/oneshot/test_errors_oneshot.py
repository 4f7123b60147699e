"""Bad input to one-shot pruning: clear errors ending `Received: name=...`."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.granularity import NM
from tfprune.granularity import Block
from tfprune.granularity import Units
from tfprune.oneshot import Magnitude
from tfprune.oneshot import SparseGPT
from tfprune.oneshot import Wanda
from tfprune.oneshot import get

L = keras.layers


def _model():
    return keras.Sequential([keras.Input((6,)), L.Dense(8, name="hidden"), L.Dense(1, name="head")])


def _x(n=16):
    return np.random.default_rng(0).normal(size=(n, 6)).astype("float32")


def _raises(error, name, fn, *args, match=None, **kwargs):
    with pytest.raises(error, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert f"Received: {name}=" in message, message
    return message


def test_method_arguments():
    assert "keeps exactly 2 of every 4 weights: its sparsity is 0.5" in _raises(
        ValueError, "sparsity", Wanda, 0.6, NM(2, 4))
    _raises(ValueError, "sparsity", SparseGPT, 1.0)
    _raises(TypeError, "sparsity", Magnitude, "half")
    assert "must be 'output', 'tensor' or None" in _raises(
        ValueError, "comparison", Wanda, 0.5, comparison="row")
    assert "applies to unstructured pruning only" in _raises(
        ValueError, "comparison", Wanda, granularity="2:4", comparison="output")
    assert "SparseGPT prunes with Unstructured, NM granularity; Block" in _raises(
        ValueError, "granularity", SparseGPT, 0.5, Block((4, 1)))
    assert "prune whole units during training" in _raises(
        ValueError, "granularity", Wanda, 0.5, Units())
    assert "along each output's input features" in _raises(
        ValueError, "granularity", Magnitude, granularity=NM(2, 4, axis="output"))
    _raises(TypeError, "damping", SparseGPT, damping="0.01")
    _raises(ValueError, "damping", SparseGPT, damping=0.0)
    assert "multiple of m=8" in _raises(
        ValueError, "block_size", SparseGPT, granularity=NM(4, 8), block_size=12)
    _raises(ValueError, "block_size", SparseGPT, block_size=0)
    assert "expected one of ['magnitude', 'sparsegpt', 'wanda']" in _raises(
        ValueError, "method", get, "obs")
    assert "must be a `tfprune.oneshot.OneShotMethod`" in _raises(TypeError, "method", get, 3)


def test_prune_oneshot_arguments():
    model, x = _model(), _x()
    assert "Wanda calibrates on data" in _raises(
        ValueError, "data", tfprune.prune_oneshot, model, Wanda())
    assert "holds no samples" in _raises(
        ValueError, "data", tfprune.prune_oneshot, model, "wanda", x[:0])
    assert "must be an array, a list or dict of arrays" in _raises(
        TypeError, "data", tfprune.prune_oneshot, model, "wanda", "calibration.npy")
    assert "does not fit input" in _raises(
        ValueError, "data", tfprune.prune_oneshot, model, "wanda", x[:, :4])
    assert "must give model 'sequential" in _raises(
        ValueError, "data", tfprune.prune_oneshot, model, "wanda", [x, x])
    assert "names inputs that model" in _raises(
        ValueError, "data", tfprune.prune_oneshot, model, "wanda", {"tokens": x})
    _raises(ValueError, "batch_size", tfprune.prune_oneshot, model, "wanda", x, batch_size=0)
    _raises(TypeError, "model", tfprune.prune_oneshot, "model.keras", "wanda", x)
    _raises(TypeError, "inplace", tfprune.prune_oneshot, model, "wanda", x, inplace="yes")
    _raises(ValueError, "verbose", tfprune.prune_oneshot, model, "wanda", x, verbose=3)
    assert "not both" in _raises(ValueError, "filters", tfprune.prune_oneshot, model, "wanda",
                                 x, layers=["hidden"], filters="hid")
    _raises(TypeError, "filters", tfprune.prune_oneshot, model, "wanda", x, filters=[3])
    assert "invalid regular expression" in _raises(
        ValueError, "filters", tfprune.prune_oneshot, model, "wanda", x, filters="(")
    _raises(ValueError, "layers", tfprune.prune_oneshot, model, "wanda", x, layers=["nope"])


def test_already_pruned_and_nothing_to_prune():
    model, x = _model(), _x()
    pruned = tfprune.prune(model, 0.5)
    _raises(ValueError, "model", tfprune.prune_oneshot, pruned, "wanda", x, inplace=True)
    _raises(ValueError, "model", tfprune.prune_oneshot, pruned, "wanda", x)
    embedding = keras.Sequential([keras.Input((3,), dtype="int32"), L.Embedding(10, 4),
                                  L.DepthwiseConv1D(2), L.Flatten(), L.Dense(1)])
    message = _raises(ValueError, "method", tfprune.prune_oneshot, embedding, "sparsegpt",
                      np.zeros((4, 3), "int32"), inplace=True)
    assert "has nothing to prune" in message and "DepthwiseConv1D is not a Dense" in message


def test_nan_in_the_data():
    x = _x()
    x[3, 2] = np.nan
    assert "cannot be inverted" in _raises(
        ValueError, "data", tfprune.prune_oneshot, _model(), SparseGPT(), x, verbose=0)
