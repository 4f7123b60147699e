"""`ShrinkReport`: what `tfprune.shrink` removed, layer by layer."""

from __future__ import annotations


class ShrinkReport:
    """Units and parameters of each layer before and after `tfprune.shrink`.

    Printing it gives an aligned table. `rows` is a list of dicts with keys
    `layer`, `type`, `units_before`, `units_after` (None for layers without
    output units: all directions together for Bidirectional),
    `params_before`, `params_after`.

    Attributes:
        model_name: name of the shrunk model.
        rows: one dict per top-level layer that has weights or units.
        params_before: parameters of the input model.
        params_after: parameters of the shrunk model.
        max_abs_error: the largest difference between the predictions of the
            two models on the random batch `shrink` checked them on.
    """

    def __init__(self, model_name: str, rows: list, params_before: int, params_after: int,
                 max_abs_error: float):
        self.model_name = model_name
        self.rows = rows
        self.params_before = params_before
        self.params_after = params_after
        self.max_abs_error = max_abs_error

    @property
    def removed_units(self) -> int:
        """Total output units removed."""
        return sum(
            r["units_before"] - r["units_after"] for r in self.rows if r["units_before"] is not None
        )

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "layers": [dict(r) for r in self.rows],
            "params_before": self.params_before,
            "params_after": self.params_after,
            "max_abs_error": self.max_abs_error,
        }

    def __getitem__(self, layer_name: str) -> dict:
        """The row of a layer, e.g. `report["dense"]["units_after"]`."""
        for row in self.rows:
            if row["layer"] == layer_name:
                return row
        raise KeyError(layer_name)

    def __str__(self) -> str:
        def units(r):
            if r["units_before"] is None:
                return "-"
            return f"{r['units_before']} -> {r['units_after']}"

        header = ["layer", "type", "units", "parameters"]
        lines = [
            [r["layer"], r["type"], units(r), f"{r['params_before']:,} -> {r['params_after']:,}"]
            for r in self.rows
        ]
        total = ["total", "", "", f"{self.params_before:,} -> {self.params_after:,}"]
        widths = [
            max(len(h), *(len(line[i]) for line in lines + [total])) for i, h in enumerate(header)
        ]

        def fmt(cells):
            return "  ".join(
                c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        body = [fmt(header), rule] + [fmt(line) for line in lines] + [rule, fmt(total)]
        return f"Shrunk '{self.model_name}'\n" + "\n".join(body)

    def __repr__(self) -> str:
        return (
            f"<ShrinkReport model={self.model_name!r} parameters={self.params_before}"
            f"->{self.params_after} removed_units={self.removed_units}>"
        )
