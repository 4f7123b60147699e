"""`SensitivityAllocation`: per-layer sparsities from a sensitivity table."""

from __future__ import annotations

import heapq

import keras
import numpy as np

from tfprune._base.sensitivity_table import SensitivityTable
from tfprune._base.validation import received
from tfprune.strategies._allocation import Allocation
from tfprune.strategies._allocation import _largest_remainder

__all__ = ["SensitivityAllocation"]


@keras.saving.register_keras_serializable("tfprune")
class SensitivityAllocation(Allocation):
    """Per-layer sparsities from a sensitivity table, at least predicted loss.

    Each layer's curve (how much the metric degrades when the layer alone is
    pruned to each sparsity, from `tfprune.sensitivity`) is interpolated
    linearly. Starting from zero, the sparsity of the layer with the
    smallest predicted degradation per pruned weight is raised by `step`,
    again and again, until `round(N * target)` weights are pruned (greedy
    marginal allocation, parameter-count weighted; optimal for convex
    curves); the last layer raised is trimmed to hit the count exactly. No
    layer goes beyond the largest sparsity measured. Candidates are looked
    up by name, then by layer path; the candidates of one layer share its
    sparsity.

    Args:
        table: a `SensitivityTable` or its `to_dict()`.
        step: sparsity increment of the greedy search. Defaults to 0.01.
        **kwargs: the common allocation arguments.

    Example:

    ```python
    table = tfprune.sensitivity(model, (x_val, y_val))
    allocation = tfprune.strategies.SensitivityAllocation(table)
    ```
    """

    def __init__(self, table, step: float = 0.01, **kwargs):
        if isinstance(table, dict):
            table = SensitivityTable.from_dict(table)
        if not isinstance(table, SensitivityTable):
            raise TypeError(
                f"`table` must be a SensitivityTable (from `tfprune.sensitivity`) "
                f"or its `to_dict()`. {received('table', table)}"
            )
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise TypeError(f"`step` must be a number in (0, 0.5]. {received('step', step)}")
        if not 0 < step <= 0.5:
            raise ValueError(f"`step` must be a number in (0, 0.5]. {received('step', step)}")
        self.table, self.step = table, float(step)
        super().__init__(**kwargs)

    def _curve(self, c):
        """`(key, curve)` of a candidate: its own curve, its row, its layer's
        row, or the parameter-weighted mean of the rows below it (a unit
        group such as an attention layer measured per sub-layer)."""
        if c.curve is not None:
            return c.name, [(0.0, 0.0)] + [(float(s), float(v)) for s, v in c.curve]
        for key in (c.name, c.layer):
            if key in self.table:
                return key, self.table.curve(key)
        rows = [r for r in self.table.names if r.startswith(c.name + "/")]
        if not rows:
            raise ValueError(
                f"Candidate {c.name!r} (layer {c.layer!r}) is not in the sensitivity "
                f"table; measured layers: {self.table.names}. Received: candidate={c.name!r}"
            )
        weights = np.array([self.table.rows[r]["n_params"] for r in rows], dtype=np.float64)
        ys = np.array([[y for _, y in self.table.curve(r)] for r in rows])
        xs = [x for x, _ in self.table.curve(rows[0])]
        return c.name, list(zip(xs, (weights @ ys / weights.sum()).tolist()))

    def _split(self, active, k, lo, hi, sparsity, final_sparsity):
        keys, blocks = [], {}
        for i, c in enumerate(active):  # candidates of one layer move together
            key, curve = self._curve(c)
            if key not in blocks:
                keys.append(key)
                blocks[key] = {"members": [], "curve": curve}
            blocks[key]["members"].append(i)
        n = np.array([c.n_params for c in active], dtype=np.float64)
        state = []
        for key in keys:
            b = blocks[key]
            members = b["members"]
            size = n[members].sum()
            xs, ys = zip(*b["curve"])
            top = min(max(xs), hi[members].sum() / size)
            start = lo[members].sum() / size
            state.append([size, np.array(xs), np.array(ys), start, top])
        level = [s[3] for s in state]

        def cost(j):
            size, xs, ys, _, top = state[j]
            nxt = min(level[j] + self.step, top)
            if nxt <= level[j] + 1e-12:
                return None
            gain = np.interp(nxt, xs, ys) - np.interp(level[j], xs, ys)
            return gain / ((nxt - level[j]) * size), nxt

        heap = [(c[0], j, c[1]) for j in range(len(state)) if (c := cost(j))]
        heapq.heapify(heap)
        pruned = sum(level[j] * state[j][0] for j in range(len(state)))
        last = None
        while pruned < k - 1e-9 and heap:
            _, j, nxt = heapq.heappop(heap)
            pruned += (nxt - level[j]) * state[j][0]
            level[j], last = nxt, j
            c = cost(j)
            if c:
                heapq.heappush(heap, (c[0], j, c[1]))
        if pruned < k - 1e-9:
            raise ValueError(
                f"The sensitivity table only reaches {pruned / n.sum():.4g} overall "
                f"(the largest sparsity measured caps each layer); measure higher "
                f"sparsities. {received('sparsity', sparsity)}"
            )
        if last is not None:
            level[last] -= (pruned - k) / state[last][0]
        counts = np.zeros(len(active))
        for j, key in enumerate(keys):
            members = blocks[key]["members"]
            counts[members] = level[j] * n[members]
        return _largest_remainder(counts + 1e-9, k, hi) / n

    def get_config(self) -> dict:
        return {"table": self.table.to_dict(), "step": self.step, **super().get_config()}
