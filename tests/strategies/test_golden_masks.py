"""The compiled mask update gives exactly the masks of the eager 0.1.0 code.

`tests/data/golden_masks.npz` was written by `tools/golden_masks.py` from
tfprune 0.1.0 (eager selection on the host): every criterion x granularity
x allocation on five models (MLP, LSTM, GRU, Conv + depthwise, attention),
two successive updates (the second pruning on top of the first), plus single
rows up to 70,001 entries with many ties. One deliberate change since: on the
conv model, `Units` now prunes a depthwise channel together with the channel
of the convolution that feeds it (the channel dependency analysis of
`tfprune/_base/channels.py`), so its `units` / `unitsmean` masks were
recorded again from the current code; every other mask is 0.1.0's. Both the eager `Plan.compute_masks`
and the compiled `MaskUpdate` must reproduce them bit for bit, and raise
where 0.1.0 raised.
"""

import os

import keras
import numpy as np
import pytest

from tfprune import strategies as S
from tfprune._masks import core as _mask_math
from tfprune._training.state import Slot
from tfprune._training.update import MaskUpdate
from tools import golden_masks as golden

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "..", "data", "golden_masks.npz"))


def _model(name):
    keras.utils.set_random_seed(7)
    model = golden.models()[name]()
    for i, v in enumerate(model.weights):
        v.assign(GOLDEN[f"{name}/weight{i}"])
    return model


def _expected(key, i, n):
    if f"{key}/{i}/error" in GOLDEN:
        return None
    return [GOLDEN[f"{key}/{i}/{t}"] for t in range(n)]


def _slots(model, plan, states):
    """Mask (and score) variables for every plan weight, as a wrapper has."""
    slots = []
    for t, pw in enumerate(plan.weights):
        mask = keras.Variable(np.ones(pw.variable.shape, "float32"), trainable=False)
        score = None
        if states is not None:
            score = keras.Variable(states[t], trainable=False)
        slots.append(Slot(pw, mask, score))
    return slots


def _states(plan):
    if not plan.strategy.criterion.needs_gradients:
        return None
    rng = np.random.default_rng(5)
    return [rng.normal(size=pw.variable.shape).astype("float32") for pw in plan.weights]


CASES = [
    (m, c, g, a)
    for m in golden.models()
    for c in golden.CRITERIA
    for g in golden.GRANULARITIES
    for a in ("uniform", "uniform_cap", "global", "global_l2", "global_bounds", "perlayer",
              "sensitivity")
]


def _checked_here(model_name, index) -> bool:
    """Each criterion x granularity x allocation is checked on one of the
    models (every one on every model, the `slow` case of `make test-all`,
    takes about 15 minutes)."""
    names = list(golden.models())
    return index % len(names) == names.index(model_name)


def _compiled_too(c_name, g_name, a_name) -> bool:
    """Tracing costs about a second a plan: by default every granularity x
    allocation is also run compiled with magnitude scores, and every
    criterion with the unstructured and unit granularities."""
    return c_name == "magnitude" or (g_name in ("unstructured", "units")
                                     and a_name in ("uniform", "global"))


@pytest.mark.parametrize("everything", [
    False, pytest.param(True, marks=pytest.mark.slow)], ids=["cover", "all"])
@pytest.mark.parametrize("model_name", list(golden.models()))
def test_eager_and_compiled_masks_match_0_1_0(model_name, everything):
    model = _model(model_name)
    checked = 0
    cases = [case for case in CASES if case[0] == model_name]
    for index, (_, c_name, g_name, a_name) in enumerate(cases):
        if not (everything or _checked_here(model_name, index)):
            continue
        compiled = everything or _compiled_too(c_name, g_name, a_name)
        key = f"{model_name}/{c_name}/{g_name}/{a_name}"
        strategy = S.Strategy(c_name, golden.GRANULARITIES[g_name](),
                              golden.allocations(model_name)[a_name]())
        if f"{key}/error" in GOLDEN:
            with pytest.raises(ValueError):
                strategy.plan(model)
            continue
        plan = strategy.plan(model)
        states = _states(plan)
        originals = [np.array(pw.variable.numpy()) for pw in plan.weights]
        slots = _slots(model, plan, states)
        update = MaskUpdate(plan, slots)  # traced on its first call only
        previous = None
        sparsities = golden.NM_SPARSITIES if g_name.startswith("nm") else golden.SPARSITIES
        for i, s in enumerate(sparsities):
            want = _expected(key, i, len(plan.weights))
            step = 10 * (i + 1)
            if want is None:
                with pytest.raises(ValueError):
                    plan.compute_masks(s, previous=previous, states=states, step=step,
                                       final_sparsity=0.7)
                if compiled:
                    with pytest.raises(ValueError):
                        update(s, step=step, final_sparsity=0.7)
                break
            # Eager, on the original weights.
            for pw, w in zip(plan.weights, originals):
                pw.variable.assign(w)
            eager = plan.compute_masks(s, previous=previous, states=states, step=step,
                                       final_sparsity=0.7)
            for t, (m, w) in enumerate(zip(eager, want)):
                np.testing.assert_array_equal(np.asarray(m).astype(np.uint8), w,
                                              err_msg=f"eager {key} update {i} tensor {t}")
            previous = [np.asarray(m) for m in eager]
            checked += 1
            if not compiled:
                continue
            # Compiled: reads the slots' masks, assigns them, zeroes weights.
            for pw, w in zip(plan.weights, originals):
                pw.variable.assign(w)
            for slot, state in zip(slots, states or []):
                slot.score.assign(state)  # Taylor resets its state after an update
            zeros = update(s, step=step, final_sparsity=0.7)
            for t, (slot, w) in enumerate(zip(slots, want)):
                np.testing.assert_array_equal(slot.mask.numpy().astype(np.uint8), w,
                                              err_msg=f"compiled {key} update {i} tensor {t}")
                value = slot.weight.variable.numpy()
                if t in update.changed:
                    assert zeros[slot.key] == int(np.sum(value == 0))
                    np.testing.assert_array_equal(value, originals[t] * w)
        for pw, w in zip(plan.weights, originals):
            pw.variable.assign(w)
    assert checked > 10


@pytest.mark.parametrize("n", [1, 7, 100, 20000, 70001])
def test_lowest_k_mask_matches_0_1_0(n):
    x, prev = GOLDEN[f"row/{n}/scores"], GOLDEN[f"row/{n}/prev"]
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        np.testing.assert_array_equal(
            np.asarray(_mask_math.lowest_k_mask(x[None], k)).astype(np.uint8),
            GOLDEN[f"row/{n}/{k}/plain"])
        np.testing.assert_array_equal(
            np.asarray(_mask_math.lowest_k_mask(x[None], k, prev[None])).astype(np.uint8),
            GOLDEN[f"row/{n}/{k}/prev"])
