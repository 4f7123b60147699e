"""The tiny-Shakespeare character GPT of the example, end to end on the
backend in use (both passes of `make test` run this file): trained
briefly, pruned one-shot to 2:4 with Wanda and SparseGPT, fine-tuned with
its masks kept."""

import math

import keras
import numpy as np
import pytest

import tfprune
from examples import _char_gpt
from tfprune import find_wrappers
from tfprune.granularity import NM
from tfprune.oneshot import SparseGPT
from tfprune.oneshot import Wanda


@pytest.fixture(scope="module")
def setup():
    text = _char_gpt.Text()
    keras.utils.set_random_seed(0)
    model = _char_gpt.build(text.vocabulary, dim=32, heads=2, layers=2)
    _char_gpt.train(model, text, steps=200, batch=16)
    calibration, _ = text.windows("train", 32, seed=7)
    return text, model, calibration


def _groups_of_four(mask, name):
    matrix = mask.reshape(-1, mask.shape[-1]) if "attention_output" in name else \
        mask.reshape(mask.shape[0], -1)  # (inputs, outputs)
    return (matrix.reshape(-1, 4, matrix.shape[1]) == 0).sum(axis=1)


def test_the_char_gpt_pruned_two_of_four_and_fine_tuned(setup):
    text, model, calibration = setup
    dense = _char_gpt.val_loss(model, text, windows=96)
    errors, losses = {}, {}
    for method in (Wanda(granularity=NM(2, 4)), SparseGPT(granularity=NM(2, 4))):
        pruned, report = tfprune.prune_oneshot(model, method, calibration, verbose=0,
                                               return_report=True)
        assert report.blocks == ["block_0", "block_1"]
        pruned_rows = [r for r in report.rows if r["status"] == "pruned"]
        assert len(pruned_rows) == 12  # q, k, v, output, fc, proj per block
        for wrapper in find_wrappers(pruned):
            for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
                zeros = _groups_of_four(keras.ops.convert_to_numpy(mask), pw.name)
                assert (zeros == 2).all(), pw.name
        errors[type(method).__name__] = np.mean([r["error"] for r in pruned_rows])
        losses[type(method).__name__] = _char_gpt.val_loss(pruned, text, windows=96)
    # SparseGPT solves for the kernel closest to the dense layer's outputs.
    assert errors["SparseGPT"] < errors["Wanda"], errors
    # Pruned, still far better than a uniform guess over the characters.
    assert max(losses.values()) < min(math.log(text.vocabulary) - 1.0, dense + 0.4), (dense, losses)
    # A few fine-tuning steps keep every mask.
    before = [keras.ops.convert_to_numpy(m).copy()
              for w in find_wrappers(pruned) for m in w.masks]
    _char_gpt.train(pruned, text, steps=5, batch=8,
                    callbacks=[tfprune.PruningCallback()], learning_rate=3e-4)
    after = [keras.ops.convert_to_numpy(m)
             for w in find_wrappers(pruned) for m in w.masks]
    assert all((a == b).all() for a, b in zip(before, after))
    final = tfprune.strip(pruned)
    assert tfprune.sparsity_report(final)["block_1/fc/kernel"]["sparsity"] == 0.5
