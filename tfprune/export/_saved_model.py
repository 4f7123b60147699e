"""`tfprune.export.saved_model`: a verified TensorFlow SavedModel."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune.export import _atomic
from tfprune.export import _backend
from tfprune.export import _model
from tfprune.export._result import ExportError
from tfprune.export._result import ExportResult

#: Relative tolerance of the SavedModel check (same float32 graph).
SAVED_MODEL_TOLERANCE = 1e-4


def write(model, specs, directory: str, batch_size=None, for_conversion=False) -> None:
    """Writes `model` as a SavedModel with `serve`/`serving_default` endpoints.

    For the artifact users keep, a bare trackable object holds the model's
    variables once and the traced `serve` function: Keras' own
    `model.export` tracks every variable twice, which doubles the variables
    file. With `for_conversion=True` (an intermediate for the TFLite
    converter, which freezes Keras' layout into constants but leaves
    READ_VARIABLE ops in the compact one) `model.export` is used.
    """
    tf_specs = [
        tf.TensorSpec((batch_size,) + tuple(shape[1:]), dtype, name=name)
        for shape, dtype, name in specs
    ]
    if for_conversion:
        signature = [_model.pack(model, tf_specs)]
        model.export(directory, format="tf_saved_model", input_signature=signature, verbose=False)
        return

    if len(tf_specs) == 1:

        @tf.function(input_signature=tf_specs)
        def serve(x):
            return model(x, training=False)

    else:

        @tf.function(input_signature=[tf_specs])
        def serve(inputs):
            return model(_model.pack(model, list(inputs)), training=False)

    # The object Keras' exporter uses too (it keeps `loaded.variables`).
    module = keras_internals.trackable_root()
    module.variables = list(model.variables)
    module.serve = serve
    tf.saved_model.save(module, directory, signatures={"serving_default": serve})


def _run(loaded, arrays):
    x = arrays[0] if len(arrays) == 1 else list(arrays)
    return [np.asarray(o) for o in tf.nest.flatten(loaded.serve(x))]


def _artifact_variables(loaded, model) -> dict:
    """Maps `id(keras variable)` to the loaded value of the same variable."""
    saved = list(getattr(loaded, "variables", []))
    by_name = {}
    for v in saved:
        by_name.setdefault(v.name.split(":")[0], []).append(v)
    found = {}
    same_order = len(saved) == len(model.variables)
    for i, v in enumerate(model.variables):
        candidate = saved[i] if same_order else None
        if candidate is None or tuple(candidate.shape) != tuple(v.shape):
            matches = by_name.get(v.path, [])
            candidate = matches[0] if len(matches) == 1 else None
        if candidate is not None:
            found[id(v)] = candidate.numpy()
    return found


def check_sparse(loaded, model) -> float:
    """Sparsity of the prunable tensors as stored in the artifact.

    Raises:
        ExportError: if a prunable tensor is missing from the artifact or
            holds values other than the model's (so fewer zeros).
    """
    values = _artifact_variables(loaded, model)
    total = zeros = 0
    for pw in walk.prunable_weights(model):
        expected = np.asarray(pw.variable.numpy())
        stored = values.get(id(pw.variable))
        if stored is None or stored.shape != expected.shape:
            raise ExportError(f"Tensor '{pw.name}' could not be found in the SavedModel's variables.")
        if not np.array_equal(stored, expected):
            raise ExportError(
                f"Tensor '{pw.name}' in the SavedModel differs from the model's "
                f"({np.count_nonzero(stored == 0)} zeros stored, "
                f"{np.count_nonzero(expected == 0)} in the model)."
            )
        total += stored.size
        zeros += int(stored.size - np.count_nonzero(stored))
    return zeros / total if total else 0.0


def saved_model(
    model,
    path,
    *,
    overwrite: bool = False,
    sample_inputs=None,
    shrink: bool = False,
    verify: bool = True,
    tolerance: float | None = None,
) -> ExportResult:
    """Exports a (pruned) Keras model as a verified TensorFlow SavedModel.

    Pruning wrappers are stripped first (`tfprune.strip`), so the artifact
    holds a plain model whose pruned weights are exactly zero. The
    SavedModel has a `serve` function and a `serving_default` signature
    (inputs `input_0`, `input_1`, ...; outputs `output_0`, ...), with any
    batch size. After writing, it is loaded back with
    `tf.saved_model.load`, its outputs are compared with the Keras model's
    and its pruned tensors are read back to check that they are as sparse
    as in the model. The directory is written next to `path` and moved into
    place only when all checks pass.

    Args:
        model: a Keras model (pruned or not) or a path to a `.keras` file.
        path: the directory to create.
        overwrite: replace `path` if it exists. Defaults to `False`.
        sample_inputs: an array, or a list of arrays (one per input), to
            compare outputs on. Defaults to `None`: 4 random samples
            (integer indices for integer inputs such as Embedding models).
        shrink: remove dead units first with `tfprune.shrink`; the export is
            then checked against the unshrunk model. Defaults to `False`.
        verify: load the artifact back and check it. Defaults to `True`.
        tolerance: largest allowed `max|output - keras output|` relative to
            `max|keras output|`. Defaults to `None`: 1e-4.

    Returns:
        An `ExportResult` (path, bytes on disk, tar+gzip size, sparsity read
        back from the artifact, max abs error).

    Raises:
        TypeError: if `model` or `sample_inputs` has the wrong type.
        ValueError: if `path` exists and `overwrite` is False, its
            directory is missing or not writable, or `sample_inputs` does
            not match the model's inputs.
        ExportError: if the artifact's outputs or sparsity do not match the
            model. `path` is left as it was then.
        ExportWriteError: (an `ExportError` and an `OSError`) if the files
            cannot be written, e.g. the disk is full. `path` is left as it was.

    Example:

    ```python
    result = tfprune.export.saved_model(pruned, "house_prices_model")
    print(result)                        # size, sparsity, max abs error
    reloaded = tf.saved_model.load("house_prices_model")
    y = reloaded.serve(x)
    ```
    """
    _model.check_bool("verify", verify)
    result = _backend.elsewhere("saved_model", model, path, dict(
        overwrite=overwrite, sample_inputs=sample_inputs, shrink=shrink, verify=verify,
        tolerance=tolerance))
    if result is not None:
        return result
    model = _model.load(model)
    path = _atomic.check_destination(path, overwrite)
    tolerance = _model.check_tolerance(tolerance, SAVED_MODEL_TOLERANCE)
    plain, reference, notes = _model.prepare(model, shrink)
    specs = _model.input_specs(plain, sample_inputs)
    if sample_inputs is not None:
        inputs = _model.user_inputs(sample_inputs, specs, "sample_inputs", plain)
    elif verify:
        inputs = _model.random_inputs(plain, specs)
    with _atomic.Staging(path, overwrite) as staging:
        write(plain, specs, staging.target)
        error = None
        if verify:
            expected = _model.call(reference, inputs)
            loaded = tf.saved_model.load(staging.target)
            error, relative = _model.max_error(expected, _run(loaded, inputs))
            if not relative <= tolerance:
                raise ExportError(
                    f"The SavedModel's outputs differ from the Keras model's: max abs error "
                    f"{error:.3g} ({relative:.3g} relative) exceeds the tolerance {tolerance:g}."
                )
            sparsity = check_sparse(loaded, plain)
            del loaded
        else:
            sparsity = _model.model_sparsity(plain)
        staging.commit()
    gz, method = _atomic.gzip_bytes(path)
    return ExportResult(
        format="saved_model",
        path=path,
        bytes=_atomic.disk_bytes(path),
        gzip_bytes=gz,
        gzip_method=method,
        sparsity=sparsity,
        max_abs_error=error,
        tolerance=tolerance if verify else None,
        notes=tuple(notes),
    )
