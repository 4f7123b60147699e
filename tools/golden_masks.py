"""Records the masks every strategy combination gives on fixed random weights.

The mask computation was rewritten as a compiled function (0.2); this script
recorded what the eager implementation of 0.1.0 gave, into
`tests/data/golden_masks.npz`, and `tests/strategies/test_golden_masks.py`
checks that the current code gives exactly the same masks. Re-run it only to
add cases, from a commit whose masks are trusted:

    python tools/golden_masks.py tests/data/golden_masks.npz
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tfprune  # noqa: E402
from tfprune import granularity as G  # noqa: E402
from tfprune import strategies as S  # noqa: E402

L = keras.layers


def models():
    """`{name: builder}`; each builder gives the same model for a seed."""
    def mlp():
        return keras.Sequential([keras.Input((12,)), L.Dense(20, name="d1"),
                                 L.Dense(16, name="d2"), L.Dense(3, name="head")], name="mlp")

    def lstm():
        return keras.Sequential([keras.Input((5, 6)), L.LSTM(8, name="lstm"),
                                 L.Dense(2, name="head")], name="lstm_model")

    def gru():
        return keras.Sequential([keras.Input((5, 6)), L.GRU(8, name="gru"),
                                 L.Dense(2, name="head")], name="gru_model")

    def conv():
        return keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(8, 3, name="c1"),
                                 L.DepthwiseConv2D(3, name="dw"), L.Flatten(),
                                 L.Dense(4, name="head")], name="conv")

    def attention():
        x = keras.Input((4, 8))
        y = L.MultiHeadAttention(2, 4, name="mha")(x, x)
        y = L.Dense(8, name="ffn")(y)
        return keras.Model(x, L.Dense(2, name="head")(y), name="attn")

    return {"mlp": mlp, "lstm": lstm, "gru": gru, "conv": conv, "attention": attention}


CRITERIA = ["magnitude", "random", "taylor", "movement", "l1_norm", "l2_norm"]
GRANULARITIES = {
    "unstructured": lambda: G.Unstructured(),
    "block41": lambda: G.Block((4, 1)),
    "block32sum": lambda: G.Block((3, 2), reduction="sum"),
    "nm24": lambda: G.NM(2, 4),
    "nm14out": lambda: G.NM(1, 4, axis="output"),
    "units": lambda: G.Units(),
    "unitsmean": lambda: G.Units("mean"),
}


def allocations(model_name):
    table_rows = {
        "mlp": ["d1", "d2", "head"], "lstm": ["lstm/lstm_cell", "head"],
        "gru": ["gru/gru_cell", "head"], "conv": ["c1", "dw", "head"],
        "attention": ["mha/query", "mha/key", "mha/value", "mha/attention_output", "ffn",
                      "head"],
    }[model_name]
    table = S.SensitivityTable("mae", "min", 1.0, [0.25, 0.5, 0.75, 0.9], {
        name: {"n_params": 100, "values": [1.0 + 0.01 * (i + 1) * j for j in (1, 2, 4, 8)]}
        for i, name in enumerate(table_rows)
    })
    return {
        "uniform": lambda: S.Uniform(),
        "uniform_cap": lambda: S.Uniform(max_sparsity=0.6, protect_last=True),
        "global": lambda: S.Global(),
        "global_l2": lambda: S.Global(normalize="l2"),
        "global_bounds": lambda: S.Global(normalize="max", min_sparsity=0.2, max_sparsity=0.9),
        "perlayer": lambda: S.PerLayer({"*d1*": 0.8, "*head*": 0.1}),
        "sensitivity": lambda: S.SensitivityAllocation(table),
    }


SPARSITIES = (0.3, 0.7)
NM_SPARSITIES = (0.2, 0.5)


def run(path):
    out = {}
    for model_name, build in models().items():
        keras.utils.set_random_seed(7)
        model = build()
        rng = np.random.default_rng(11)
        for v in model.weights:  # integer-ish values make ties
            w = rng.normal(size=v.shape).astype("float32")
            if v.name == "kernel":
                w = np.where(rng.random(v.shape) < 0.3, np.round(w * 4) / 4, w).astype("float32")
            v.assign(w)
        for name, w in enumerate(model.weights):
            out[f"{model_name}/weight{name}"] = np.asarray(w.numpy())
        for c_name in CRITERIA:
            for g_name, g in GRANULARITIES.items():
                for a_name, a in allocations(model_name).items():
                    key = f"{model_name}/{c_name}/{g_name}/{a_name}"
                    strategy = S.Strategy(c_name, g(), a())
                    try:
                        plan = strategy.plan(model)
                    except ValueError as e:
                        out[key + "/error"] = np.array(str(e))
                        continue
                    states = None
                    if strategy.criterion.needs_gradients:
                        srng = np.random.default_rng(5)
                        states = [srng.normal(size=pw.variable.shape).astype("float32")
                                  for pw in plan.weights]
                    previous = None
                    sparsities = NM_SPARSITIES if g_name.startswith("nm") else SPARSITIES
                    for i, s in enumerate(sparsities):
                        try:
                            masks = plan.compute_masks(s, previous=previous, states=states,
                                                       step=10 * (i + 1), final_sparsity=0.7)
                        except ValueError as e:
                            out[f"{key}/{i}/error"] = np.array(str(e))
                            break
                        for t, m in enumerate(masks):
                            out[f"{key}/{i}/{t}"] = np.asarray(
                                keras.ops.convert_to_numpy(m), "float32").astype(np.uint8)
                        previous = masks
    # Single tensors, large rows (selection beyond the sorted size) and ties.
    rng = np.random.default_rng(3)
    for n in (1, 7, 100, 20000, 70001):
        x = rng.normal(size=(n,)).astype("float32")
        x[rng.random(n) < 0.2] = 0.5  # many ties
        out[f"row/{n}/scores"] = x
        prev = (rng.random(n) > 0.1).astype("float32")
        out[f"row/{n}/prev"] = prev
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            m = tfprune._masks.core.lowest_k_mask(x[None], k)
            out[f"row/{n}/{k}/plain"] = np.asarray(m).astype(np.uint8)
            m = tfprune._masks.core.lowest_k_mask(x[None], k, prev[None])
            out[f"row/{n}/{k}/prev"] = np.asarray(m).astype(np.uint8)
    np.savez_compressed(path, **out)
    print(f"{len(out)} arrays -> {path}")


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden_masks.npz")
