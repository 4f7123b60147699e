"""One-shot pruning of a keras_hub GPT-2 causal LM, block by block."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import find_wrappers
from tfprune.granularity import NM
from tfprune.oneshot import SparseGPT
from tfprune.oneshot import Wanda

keras_hub = pytest.importorskip("keras_hub")

VOCABULARY, LENGTH = 64, 16


@pytest.fixture(scope="module")
def lm():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=2 * LENGTH)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {"token_ids": rng.integers(0, VOCABULARY, (12, LENGTH)).astype("int32"),
            "padding_mask": np.ones((12, LENGTH), "int32")}


def _masks(model):
    return {pw.name: np.asarray(keras.ops.convert_to_numpy(m))
            for w in find_wrappers(model) for pw, m in zip(w.pruned_weights, w.masks)}


@pytest.mark.parametrize("method", [Wanda(0.5), SparseGPT(0.5), Wanda(granularity=NM(2, 4)),
                                    SparseGPT(granularity=NM(2, 4))], ids=repr)
def test_gpt2_blocks_pruned_in_order_with_exact_counts(lm, data, method):
    with pytest.warns(UserWarning, match="its copy is a plain Functional"):
        pruned, report = tfprune.prune_oneshot(lm, method, data, batch_size=4, verbose=0,
                                               return_report=True)
    assert report.blocks == ["transformer_layer_0", "transformer_layer_1"]
    assert report.samples == 12
    status = {r["tensor"]: r["status"] for r in report.rows}
    assert status["gpt2_backbone/token_embedding/embeddings"] == "protected"
    assert status["gpt2_backbone/position_embedding/embeddings"] == "protected"
    # q, k, v, output and two feed-forward kernels per block; the protected
    # embeddings, inside the nested backbone, are not wrapped.
    masks = _masks(pruned)
    assert len(masks) == 12 and list(status.values()).count("pruned") == 12
    for name, mask in masks.items():
        matrix = mask.reshape(-1, mask.shape[-1]) if "attention_output" in name else \
            mask.reshape(mask.shape[0], -1)  # (inputs, outputs)
        if method.nm is not None:
            groups = matrix.reshape(-1, 4, matrix.shape[1])
            assert (np.sum(groups == 0, axis=1) == 2).all(), name
        elif isinstance(method, Wanda):  # per output unit
            assert (np.sum(matrix == 0, axis=0) == matrix.shape[0] // 2).all(), name
        else:  # per block of 128 inputs: one block here
            assert np.sum(matrix == 0) == matrix.size // 2, name
    errors = [r["error"] for r in report.rows if r["status"] == "pruned"]
    assert all(0 < e < 1 for e in errors)


def test_gpt2_in_place_keeps_the_class_and_generates(lm, data):
    model = keras_hub.models.GPT2CausalLM.from_config(lm.get_config())
    model.set_weights(lm.get_weights())
    result = tfprune.prune_oneshot(model, SparseGPT(0.5), data, inplace=True, verbose=0)
    assert result is model and type(model) is keras_hub.models.GPT2CausalLM
    kernel = model.backbone.transformer_layers[1]._feedforward_output_dense.kernel
    assert np.mean(keras.ops.convert_to_numpy(kernel) == 0) == 0.5
    prompt = {"token_ids": np.zeros((1, 2 * LENGTH), "int32"),
              "padding_mask": (np.arange(2 * LENGTH) < 4)[None].astype("int32")}
    tokens = keras.ops.convert_to_numpy(model.generate(prompt, stop_token_ids=None)["token_ids"])
    assert tokens.shape == (1, 2 * LENGTH) and (tokens[0, 4:] != 0).any()
