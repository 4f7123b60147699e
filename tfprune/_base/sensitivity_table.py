"""`SensitivityTable`: the result of `tfprune.sensitivity`.

The metric of a model with each layer pruned alone at a few sparsities; it
prints as an aligned table, converts to and from plain data, plots, and
gives the degradation curves that `SensitivityAllocation` reads.
"""

from __future__ import annotations

import numpy as np

from tfprune._base.validation import received

__all__ = ["SensitivityTable", "metric_mode"]

_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "r2", "f1", "iou")


def metric_mode(name: str, mode: str = "auto") -> str:
    """'min' or 'max': whether lower or higher values of a metric are better."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max'. {received('mode', mode)}")
    if mode != "auto":
        return mode
    name = str(name).lower()
    return "max" if any(key in name for key in _HIGHER_IS_BETTER) else "min"


class SensitivityTable:
    """Metric of the model with each layer pruned alone at each sparsity.

    Printing it gives an aligned table. `to_dict()`/`from_dict()` convert to
    and from plain JSON-ready data.

    Attributes:
        metric: name of the metric.
        mode: "min" if lower is better, "max" if higher is.
        baseline: the metric of the unpruned model.
        sparsities: the sparsities measured.
        rows: `{layer_path: {"n_params": int, "values": [metric, ...]}}`.
    """

    def __init__(self, metric: str, mode: str, baseline: float, sparsities, rows: dict):
        self.metric = str(metric)
        self.mode = metric_mode(self.metric, mode)
        self.baseline = float(baseline)
        self.sparsities = [float(s) for s in sparsities]
        self.rows = {
            name: {"n_params": int(r["n_params"]), "values": [float(v) for v in r["values"]]}
            for name, r in rows.items()
        }

    @property
    def names(self) -> list:
        return list(self.rows)

    def __contains__(self, name) -> bool:
        return name in self.rows

    def __getitem__(self, name) -> dict:
        """`{sparsity: metric}` of one layer."""
        return dict(zip(self.sparsities, self.rows[name]["values"]))

    def curve(self, name) -> list:
        """`[(sparsity, degradation), ...]` from `(0, 0)`; degradation >= 0
        is how much worse the metric got, made non-decreasing."""
        values = np.array(self.rows[name]["values"], dtype=np.float64)
        sign = 1.0 if self.mode == "min" else -1.0
        worse = np.maximum.accumulate(np.maximum(sign * (values - self.baseline), 0.0))
        return [(0.0, 0.0)] + list(zip(self.sparsities, worse.tolist()))

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "mode": self.mode,
            "baseline": self.baseline,
            "sparsities": list(self.sparsities),
            "rows": {n: dict(r, values=list(r["values"])) for n, r in self.rows.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> SensitivityTable:
        return cls(data["metric"], data["mode"], data["baseline"], data["sparsities"], data["rows"])

    def __eq__(self, other) -> bool:
        return isinstance(other, SensitivityTable) and self.to_dict() == other.to_dict()

    def __str__(self) -> str:
        header = ["layer", "parameters"] + [f"s={s:g}" for s in self.sparsities]
        lines = [["(baseline)", "", *[f"{self.baseline:.4g}"] * len(self.sparsities)]]
        lines += [
            [name, f"{r['n_params']:,}", *[f"{v:.4g}" for v in r["values"]]]
            for name, r in self.rows.items()
        ]
        widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]

        def fmt(row):
            cells = [c.rjust(w) for c, w in zip(row, widths)]
            cells[0] = row[0].ljust(widths[0])
            return "  ".join(cells)

        better = "lower" if self.mode == "min" else "higher"
        title = f"Sensitivity ({self.metric}, {better} is better)"
        return "\n".join([title, fmt(header), "-" * len(fmt(header))] + [fmt(r) for r in lines])

    def __repr__(self) -> str:
        return f"SensitivityTable(metric={self.metric!r}, layers={len(self.rows)})"

    def plot(self, path: str) -> None:
        """Saves a plot of metric vs sparsity, one line per layer, to `path`.

        Raises:
            ImportError: if matplotlib is not installed.
        """
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError(
                "SensitivityTable.plot needs matplotlib. Install it with "
                "`pip install 'tfprune[plot]'` (or `pip install matplotlib`)."
            ) from e
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, r in self.rows.items():
            ax.plot([0.0] + self.sparsities, [self.baseline] + r["values"], marker="o", label=name)
        ax.axhline(self.baseline, color="gray", linestyle="--", linewidth=1, label="baseline")
        ax.set_xlabel("sparsity of the layer")
        ax.set_ylabel(self.metric)
        ax.set_title("Pruning sensitivity per layer")
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
