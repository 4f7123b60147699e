"""The life cycle of one real model, stage by stage, for the model matrices.

prune -> fit (a few steps of random data, `PruningCallback`) -> exact
sparsity -> strip (same predictions) -> `.keras` round trip of the pruned
and the stripped model -> TFLite export, verified in LiteRT by the exporter.

A stage that fails for a known reason (a `keras_hub` layer whose config
does not round-trip, say) is declared as a `KnownFailure`: the stages that
do not need its result still run, and the test ends as xfail with the
reason. A known failure that does not happen fails the test, so that it is
removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
import warnings

import keras
import numpy as np
import pytest

import tfprune
from tfprune import find_wrappers

FINAL = 0.8
STEPS, BATCH = 3, 2
STAGES = ("prune", "fit", "sparsity", "strip", "save", "tflite")


@dataclasses.dataclass(frozen=True)
class KnownFailure:
    """A stage expected to raise `error` with a message matching `match`."""

    error: type
    match: str
    reason: str


def _call(model, x):
    """Inference outputs as a structure of numpy arrays (eager, no tracing)."""
    return keras.tree.map_structure(
        lambda t: np.asarray(keras.ops.convert_to_numpy(t)), model(x, training=False)
    )


def _assert_same(a, b):
    keras.tree.assert_same_structure(a, b)
    for left, right in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        np.testing.assert_array_equal(left, right)


def _zeros(model):
    return [(r["layer"], r["weight"], r["zeros"]) for r in tfprune.sparsity_report(model).rows]


@contextlib.contextmanager
def _warns(match):
    """`pytest.warns(UserWarning, match=...)` for each pattern of `match`
    (None: tfprune's own warnings stay errors, as everywhere in the suite)."""
    if not match:
        yield
        return
    patterns = [match] if isinstance(match, str) else list(match)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for pattern in patterns:
        assert any(re.search(pattern, m) for m in messages), (pattern, messages)
    unexpected = [
        m for m in messages
        if m.startswith("tfprune") and not any(re.search(p, m) for p in patterns)
    ]
    assert not unexpected, unexpected


def flat_inputs(model, x):
    """`(model with list inputs, list of arrays)` for the exporters.

    `tfprune.export` feeds a model a list of arrays, one per input; a model
    with dict inputs (every `keras_hub` backbone) is called through a
    Functional model that takes the list and hands the dict on.
    """
    if not isinstance(model.input, dict):
        return model, x
    names = [t.name for t in model.inputs]
    inputs = {
        name: keras.Input(x[name].shape[1:], dtype=x[name].dtype, name=name) for name in names
    }
    outputs = keras.tree.flatten(model(inputs))
    return keras.Model([inputs[n] for n in names], outputs, name=f"{model.name}_flat"), [
        x[n] for n in names
    ]


class LifeCycle:
    """Runs the stages on one model; `times` maps each stage to seconds."""

    #: Number of input samples `run` trains on.
    samples = STEPS * BATCH

    def __init__(self, check_pruned, tmp_path, record_property):
        self._check_pruned = check_pruned
        self._tmp_path = tmp_path
        self._record = record_property
        self.times = {}

    def run(self, model, x, y=None, *, loss="mse", prune_warns=None, strip_warns=None,
            known_failures=None, then=None):
        """The whole life cycle of `model` on inputs `x` (STEPS * BATCH samples).

        Args:
            model: a built Keras model with random weights.
            x: its inputs (same structure as `model.input`).
            y: its targets. Defaults to `None`: random values shaped like
                the outputs.
            loss: the loss `fit` minimizes. Defaults to "mse".
            prune_warns, strip_warns: patterns (a string or a list) of the
                UserWarnings `prune` and `strip` must give; any other
                tfprune warning is an error.
            known_failures: `{stage: KnownFailure}`.
            then: optional `fn(pruned, final)`, more checks once the stages
                ran (before the xfail of a known failure).
        """
        known = dict(known_failures or {})
        unknown = set(known) - set(STAGES)
        assert not unknown, unknown
        failed = []
        state = {"model": model, "x": x, "y": y, "loss": loss}
        for stage in STAGES:
            start = time.perf_counter()
            expected = known.get(stage)
            try:
                getattr(self, f"_{stage}")(state, prune_warns if stage == "prune" else strip_warns)
            except Exception as e:
                self.times[stage] = time.perf_counter() - start
                if expected is None or not isinstance(e, expected.error) or not re.search(
                    expected.match, str(e)
                ):
                    raise
                failed.append(f"{stage}: {expected.reason}")
                if stage in ("prune", "fit", "strip"):  # later stages need its result
                    break
                continue
            self.times[stage] = time.perf_counter() - start
            assert expected is None, f"stage '{stage}' passed: remove its known failure"
        self._record("stage_seconds", {k: round(v, 1) for k, v in self.times.items()})
        if then is not None and "final" in state:
            then(state["pruned"], state["final"])
        if failed:
            pytest.xfail("; ".join(failed))

    # ----------------------------------------------------------------- stages
    def _prune(self, state, warns):
        model, x = state["model"], state["x"]
        before = _call(model, x)
        state["tensors"] = [(r["layer"], r["weight"]) for r in tfprune.sparsity_report(model).rows]
        assert state["tensors"]
        schedule = tfprune.schedules.PolynomialDecay(0.0, FINAL, 0, STEPS - 1)
        with _warns(warns):
            state["pruned"] = tfprune.prune(model, schedule)
        _assert_same(_call(model, x), before)  # the original is left untouched

    def _fit(self, state, _):
        pruned, x, y = state["pruned"], state["x"], state["y"]
        if y is None:
            rng = np.random.default_rng(1)
            y = keras.tree.map_structure(
                lambda t: rng.standard_normal(t.shape).astype("float32"), _call(pruned, x)
            )
        pruned.compile(keras.optimizers.Adam(1e-3), state["loss"])
        pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
                   callbacks=[tfprune.PruningCallback(update_every=1)])
        assert int(pruned.optimizer.iterations.numpy()) == STEPS

    def _sparsity(self, state, _):
        pruned = state["pruned"]
        report = tfprune.sparsity_report(pruned)
        # Every prunable tensor of the model is pruned, each exactly to FINAL.
        assert [(r["layer"], r["weight"]) for r in report.rows] == state["tensors"]
        for row in report.rows:
            assert row["zeros"] == round(row["parameters"] * FINAL), row
        assert self._check_pruned(pruned, FINAL) == len(report.rows)
        state["zeros"] = _zeros(pruned)

    def _strip(self, state, warns):
        pruned, x = state["pruned"], state["x"]
        state["out"] = _call(pruned, x)
        with _warns(warns):
            final = tfprune.strip(pruned)
        assert not find_wrappers(final)
        _assert_same(_call(final, x), state["out"])
        assert _zeros(final) == state["zeros"]
        state["final"] = final

    def _save(self, state, _):
        for name in ("pruned", "final"):
            path = self._tmp_path / f"{name}.keras"
            state[name].save(path)
            loaded = keras.saving.load_model(path)
            _assert_same(_call(loaded, state["x"]), state["out"])
            assert _zeros(loaded) == state["zeros"]

    def _tflite(self, state, _):
        model, arrays = flat_inputs(state["final"], state["x"])
        sample = arrays if isinstance(arrays, list) else [arrays]
        sample = [a[:4] for a in sample]
        result = tfprune.export.tflite(
            model, self._tmp_path / "model.tflite",
            sample_inputs=sample[0] if len(sample) == 1 else sample,
        )
        # The exporter ran the file in LiteRT and compared the outputs.
        assert result.max_abs_error is not None and result.resolver is not None
        assert result.sparsity == pytest.approx(FINAL, abs=0.01)
        assert result.sparse_tensors
