"""`OneShotReport`: what `prune_oneshot` did to each tensor."""

from __future__ import annotations

__all__ = ["OneShotReport"]


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


class OneShotReport:
    """Per-tensor outcome of a one-shot pruning, with totals.

    Printing it gives an aligned table. `rows` holds one dict per prunable
    tensor of the model, with keys `tensor` (its path), `shape`,
    `parameters`, `zeros`, `sparsity`, `error` (the layer-wise relative
    error `||X W - X W'||² / ||X W||²` on the calibration inputs the pruned
    model gives the layer; None without data or for a tensor left dense),
    `status` ("pruned", "protected", "not selected" or "skipped: <why>")
    and `block` (the step it was calibrated in).

    Attributes:
        method: the `OneShotMethod` used.
        rows: one dict per prunable tensor.
        parameters: weights in the pruned tensors.
        zeros: zeros among them.
        sparsity: `zeros / parameters`.
        blocks: names of the blocks calibrated in turn.
        samples: calibration samples seen per block.
        peak_statistics_bytes: the largest memory that calibration
            statistics held at once (one block's).
        seconds: wall time of the whole call.
    """

    def __init__(self, model_name, method, rows, blocks, samples, peak_statistics_bytes,
                 seconds):
        self.model_name = model_name
        self.method = method
        self.rows = rows
        pruned = [r for r in rows if r["status"] == "pruned"]
        self.parameters = sum(r["parameters"] for r in pruned)
        self.zeros = sum(r["zeros"] for r in pruned)
        self.sparsity = self.zeros / self.parameters if self.parameters else 0.0
        self.blocks = blocks
        self.samples = samples
        self.peak_statistics_bytes = peak_statistics_bytes
        self.seconds = seconds

    def __getitem__(self, name: str) -> dict:
        """The row of tensor `name`, e.g. `report["dense/kernel"]`."""
        for row in self.rows:
            if row["tensor"] == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "method": repr(self.method),
            "tensors": [dict(r) for r in self.rows],
            "parameters": self.parameters,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
            "blocks": list(self.blocks),
            "samples": self.samples,
            "peak_statistics_bytes": self.peak_statistics_bytes,
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        header = ["tensor", "shape", "sparsity", "error", "status"]
        lines = [[
            r["tensor"],
            "x".join(str(d) for d in r["shape"]),
            f"{r['sparsity']:.2%}",
            "-" if r["error"] is None else f"{r['error']:.4f}",
            r["status"],
        ] for r in self.rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        right = {2, 3}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "  ".join("-" * w for w in widths)
        body = [fmt(header), rule] + [fmt(line) for line in lines] + [rule]
        total = (f"{self.zeros:,} of {self.parameters:,} weights pruned ({self.sparsity:.2%}) "
                 f"in {sum(r['status'] == 'pruned' for r in self.rows)} tensors, "
                 f"{len(self.blocks)} blocks, {self.samples} calibration samples, "
                 f"{self.seconds:.1f} s; statistics peaked at "
                 f"{_mb(self.peak_statistics_bytes)}")
        return f"One-shot {self.method!r} of '{self.model_name}'\n" + "\n".join(body + [total])

    def __repr__(self) -> str:
        return (f"OneShotReport(model={self.model_name!r}, method={self.method!r}, "
                f"sparsity={self.sparsity:.4f}, tensors={len(self.rows)})")
