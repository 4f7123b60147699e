"""What an export returns (`ExportResult`) and how it fails (`ExportError`)."""

from __future__ import annotations

import dataclasses


class ExportError(RuntimeError):
    """An export that could not be completed.

    Raised when the converter fails or when the written artifact, run back,
    does not reproduce the Keras model's outputs within the tolerance. The
    destination is left as it was when it is raised.
    """


class ExportWriteError(ExportError, OSError):
    """An export whose files could not be written or moved into place.

    Raised for a full disk, a quota, a read-only file system or an I/O error
    met while writing, including TensorFlow's own errors for them (such as
    `ResourceExhaustedError: ... No space left on device`). It is both an
    `ExportError` and an `OSError`: `errno` is the operating-system error
    (`errno.ENOSPC` for a full disk, `None` if unknown), `strerror` its
    description and `filename` the export's destination. The destination is
    left as it was (an artifact it held is kept), unless the message says
    where the previous artifact was kept.
    """

    def __init__(self, message: str, errno=None, strerror=None, filename=None):
        super().__init__(message)
        self.errno = errno
        self.strerror = strerror
        self.filename = filename

    def __str__(self) -> str:
        return self.args[0]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Summary of an export: where it went, how big it is, how faithful.

    Printing it gives a short readable summary.

    Attributes:
        format: `"saved_model"` or `"tflite"`.
        path: the written file or directory.
        bytes: size on disk (sum of the files of a directory).
        gzip_bytes: compressed size, as described by `gzip_method`.
        gzip_method: how `gzip_bytes` was measured: `"gzip -9 of the file"`
            or `"tar + gzip -9 of the directory"`.
        sparsity: fraction of zeros in the prunable tensors of the artifact
            (SavedModel: read back from its variables; TFLite: of the model
            that was converted).
        max_abs_error: largest absolute difference between the artifact's
            outputs and the Keras model's on the verification inputs (`None`
            when `verify=False`).
        tolerance: the relative tolerance the outputs were checked against
            (the error is compared to `tolerance * max|keras output|`).
        quantize: TFLite quantization mode (`None` for float).
        sparse_tensors: names of the TFLite tensors stored in the sparse
            format.
        ops: names of the TFLite operators in the file, sorted.
        resolver: the LiteRT op resolver the file was verified with.
        batch_size: the batch size of the exported signature (`None`: any).
        notes: anything worth knowing about how the artifact was made.
    """

    format: str
    path: str
    bytes: int
    gzip_bytes: int
    gzip_method: str
    sparsity: float
    max_abs_error: float | None
    tolerance: float | None
    quantize: str | None = None
    sparse_tensors: tuple = ()
    ops: tuple = ()
    resolver: str | None = None
    batch_size: int | None = None
    notes: tuple = ()

    def to_dict(self) -> dict:
        """The fields as a plain dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
        }

    def __str__(self) -> str:
        kind = "SavedModel" if self.format == "saved_model" else "TFLite"
        if self.format == "tflite":
            kind += f" ({self.quantize or 'float32'})"
        lines = [
            f"{kind} written to {self.path}",
            f"  size:        {_size(self.bytes)} ({_size(self.gzip_bytes)} as {self.gzip_method})",
            f"  sparsity:    {self.sparsity:.2%} of the prunable weights are zero",
        ]
        if self.max_abs_error is None:
            lines.append("  verified:    no (verify=False)")
        else:
            how = f", LiteRT resolver {self.resolver}" if self.resolver else ""
            lines.append(
                f"  verified:    max abs error {self.max_abs_error:.3g} "
                f"(tolerance {self.tolerance:g} relative{how})"
            )
        if self.format == "tflite":
            count = len(self.sparse_tensors)
            lines.append(f"  sparse:      {count} tensor{'' if count == 1 else 's'} stored sparse")
            lines.append(f"  ops:         {', '.join(self.ops)}")
            batch = "any" if self.batch_size is None else str(self.batch_size)
            lines.append(f"  batch size:  {batch}")
        lines.extend(f"  note:        {note}" for note in self.notes)
        return "\n".join(lines)
