"""`tfprune.export.tflite`: a verified TFLite flatbuffer, sparse if pruned."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfprune._base.validation import received
from tfprune.export import _atomic
from tfprune.export import _backend
from tfprune.export import _flatbuffer
from tfprune.export import _litert
from tfprune.export import _model
from tfprune.export import _recurrent
from tfprune.export import _repair
from tfprune.export._result import ExportError
from tfprune.export._result import ExportResult
from tfprune.export._saved_model import write as write_saved_model

#: Default relative tolerance of the LiteRT check, per quantization mode:
#: `max|tflite - keras| <= tolerance * max|keras|`.
TOLERANCES = {None: 1e-4, "float16": 1e-2, "dynamic": 0.1, "int8": 0.2}

_MAX_CALIBRATION_SAMPLES = 1000
_CHECK_SAMPLES = 16


def _check_options(quantize, sparse, verify, select_tf_ops, compact):
    if quantize is not None and (not isinstance(quantize, str) or quantize not in TOLERANCES):
        raise ValueError(
            '`quantize` must be None, "dynamic", "int8" or "float16". '
            f"{received('quantize', quantize)}"
        )
    for name, value in [("sparse", sparse), ("verify", verify), ("select_tf_ops", select_tf_ops),
                        ("compact", compact)]:
        _model.check_bool(name, value)


def representative_samples(data, specs, model=None) -> list:
    """Calibration samples (lists of arrays with batch size 1) from `data`.

    `data` is an array (or a list of arrays, one per input) of inputs with a
    batch dimension, or a callable returning an iterable of such batches.
    """
    if callable(data):
        try:
            batches = iter(data())
        except TypeError as e:
            raise TypeError(
                "`representative_data` must be an array, a list of arrays, or a callable "
                f"returning an iterable of them. {received('representative_data', data)}"
            ) from e
    else:
        batches = [data]
    samples = []
    for batch in batches:
        arrays = _model.user_inputs(batch, specs, "representative_data", model)
        samples.extend([a[i : i + 1] for a in arrays] for i in range(len(arrays[0])))
        if len(samples) >= _MAX_CALIBRATION_SAMPLES:
            break
    if not samples:
        raise ValueError(
            "`representative_data` must hold at least one sample. "
            f"{received('representative_data', data)}"
        )
    return samples[:_MAX_CALIBRATION_SAMPLES]


def _converter_message(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return " | ".join((errors or lines or [type(error).__name__])[:3])[:600]


def _convert(plain, specs, rnns, staging, *, quantize, sparse, samples, select_tf_ops):
    """Converts through an intermediate SavedModel; returns (bytes, batch size)."""
    failures = []
    for batch_size in (None, 1):
        directory = staging.scratch(f"saved_model_batch_{batch_size or 'any'}_{len(failures)}")
        with _recurrent.unrolled(rnns):
            write_saved_model(plain, specs, directory, batch_size=batch_size, for_conversion=True)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
        if quantize is not None:
            optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.optimizations = optimizations
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS]
        if select_tf_ops:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = lambda: iter(samples)
        try:
            return converter.convert(), batch_size
        except Exception as e:  # ConverterError and friends
            failures.append(f"batch size {batch_size or 'any'}: {_converter_message(e)}")
    raise ExportError(
        "The TFLite converter failed (builtin ops only"
        + (" + TF ops" if select_tf_ops else "")
        + "): "
        + "; ".join(failures)
    )


def tflite(
    model,
    path,
    *,
    quantize: str | None = None,
    sparse: bool = True,
    representative_data=None,
    sample_inputs=None,
    overwrite: bool = False,
    shrink: bool = False,
    verify: bool = True,
    tolerance: float | None = None,
    select_tf_ops: bool = False,
    compact: bool = True,
) -> ExportResult:
    """Exports a (pruned) Keras model to a verified `.tflite` file.

    Pruning wrappers are stripped first. With `sparse=True` the converter's
    sparsity pass (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`) stores pruned
    weights in TFLite's sparse format: random sparsity is stored compressed
    and densified once at load time; FULLY_CONNECTED also has kernels that
    compute directly on 1x4-block (float) and 1x16-block (int8) sparse
    weights. Tensors with fewer than about 30% zeros are left dense by the
    converter.

    Only builtin ops are used, so the file runs in plain LiteRT. Recurrent
    layers (SimpleRNN, LSTM, GRU, also inside Bidirectional) are unrolled
    over the sequence length of the model's input, which must be fixed.

    The file is run in LiteRT (`ai_edge_litert`) and its outputs compared
    with the Keras model's; the op resolver that runs it is recorded
    (full-integer sparse models do not run in the default XNNPACK delegate).
    The file is written next to `path` and moved into place only when the
    check passes.

    Args:
        model: a Keras model (pruned or not) or a path to a `.keras` file.
        path: the `.tflite` file to create.
        quantize: `None` (float32, the default), `"dynamic"` (int8 weights,
            float activations), `"int8"` (full integer, needs
            `representative_data`; inputs and outputs stay float32) or
            `"float16"` (float16 weights).
        sparse: store pruned tensors sparse. Defaults to `True`.
        representative_data: typical inputs to calibrate `"int8"`: an
            array (or a list of arrays, one per input) with a batch
            dimension, or a callable returning an iterable of such batches.
            At most 1000 samples are used. Ignored by the other modes.
        sample_inputs: an array, or a list of arrays, to check the outputs
            on. Defaults to `None`: the first 16 representative samples for
            `"int8"`, otherwise 4 random samples (integer indices for integer
            inputs such as Embedding models).
        overwrite: replace `path` if it exists. Defaults to `False`.
        shrink: remove dead units first with `tfprune.shrink`; the file is
            then checked against the unshrunk model. Defaults to `False`.
        verify: run the file in LiteRT and check it. Defaults to `True`.
        tolerance: largest allowed `max|tflite - keras|` relative to
            `max|keras|`. Defaults to `None`: 1e-4 (float32), 1e-2
            (float16), 0.1 (dynamic), 0.2 (int8).
        select_tf_ops: also allow TensorFlow ops (Flex); the file then
            needs the Flex delegate, which plain LiteRT lacks, so it can
            only be exported with `verify=False`. Defaults to `False`.
        compact: drop metadata the runtime does not use: the long tensor
            names the converter builds by joining the names of fused ops
            with ";" (each keeps its first part; they can take most of an
            unrolled or quantized file) and quantization parameters stored
            twice around DENSIFY ops. Signatures, input/output names and
            the computation are unchanged. Defaults to `True`.

    Returns:
        An `ExportResult` with the sizes, the tensors stored sparse, the ops
        in the file, the resolver used and notes (e.g. how recurrent layers
        were unrolled).

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if `quantize` is unknown, `"int8"` is asked without
            `representative_data`, `path` exists and `overwrite` is False,
            its directory is missing or not writable, inputs do not match
            the model, or a recurrent model has no fixed sequence length.
        ExportError: if the converter fails or the file does not reproduce
            the model's outputs. `path` is left as it was then.
        ExportWriteError: (an `ExportError` and an `OSError`) if the files
            cannot be written, e.g. the disk is full. `path` is left as it was.
        ImportError: if `verify=True` and LiteRT is not installed.

    Example:

    ```python
    result = tfprune.export.tflite(pruned, "model.tflite", quantize="dynamic")
    print(result.bytes, result.sparse_tensors, result.resolver)
    ```
    """
    _check_options(quantize, sparse, verify, select_tf_ops, compact)
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            '`representative_data` is required for quantize="int8": full-integer '
            "quantization calibrates the activation ranges on typical inputs (an array "
            "of about 100-500 samples). Use quantize=\"dynamic\" to quantize the weights "
            "only. Received: representative_data=None"
        )
    result = _backend.elsewhere("tflite", model, path, dict(
        quantize=quantize, sparse=sparse, representative_data=representative_data,
        sample_inputs=sample_inputs, overwrite=overwrite, shrink=shrink, verify=verify,
        tolerance=tolerance, select_tf_ops=select_tf_ops, compact=compact))
    if result is not None:
        return result
    model = _model.load(model)
    path = _atomic.check_destination(path, overwrite)
    tolerance = _model.check_tolerance(tolerance, TOLERANCES[quantize])
    plain, reference, notes = _model.prepare(model, shrink)
    specs = _model.input_specs(plain, sample_inputs)
    rnns = _recurrent.recurrent_layers(plain)
    length = _recurrent.check_fixed_length(plain, specs, rnns)
    samples = representative_samples(representative_data, specs, plain) if quantize == "int8" else None
    if sample_inputs is not None:
        inputs = _model.user_inputs(sample_inputs, specs, "sample_inputs", plain)
    elif samples is not None:
        inputs = [np.concatenate(parts) for parts in zip(*samples[:_CHECK_SAMPLES])]
    elif verify:
        inputs = _model.random_inputs(plain, specs)
    if rnns:
        notes.append(_recurrent.describe(rnns, length))
    options = dict(quantize=quantize, samples=samples, select_tf_ops=select_tf_ops)
    with _atomic.Staging(path, overwrite) as staging:
        content, batch_size = _convert(plain, specs, rnns, staging, sparse=sparse, **options)
        if batch_size == 1:
            notes.append("the converter rejected a dynamic batch size; the file takes batches of 1")
        if sparse and _repair.broken_tensors(content):
            dense, _ = _convert(plain, specs, rnns, staging, sparse=False, **options)
            content, fixed = _repair.repair(content, dense)
            notes.append(
                f"{len(fixed)} tensor(s) stored dense because the converter's sparse "
                "encoding of them is misread by the runtime: "
                + ", ".join(name.split(";")[0] for name in fixed)
            )
        if compact:
            content = _flatbuffer.compact(content)
        with open(staging.target, "wb") as f:
            f.write(content)
        info = _flatbuffer.parse(content)
        resolver = error = None
        if verify:
            label = f"TFLite ({quantize or 'float32'}{', sparse' if sparse else ''})"
            expected = _model.call(reference, inputs)
            resolver, error, run_notes = _litert.verify(content, inputs, expected, tolerance, label)
            notes.extend(run_notes)
        staging.commit()
    sparsity = _model.model_sparsity(plain)
    if sparse and sparsity > 0 and not info.sparse_tensors:
        notes.append("no tensor is stored sparse: TFLite keeps tensors with under ~30% zeros dense")
    gz, method = _atomic.gzip_bytes(path)
    return ExportResult(
        format="tflite",
        path=path,
        bytes=_atomic.disk_bytes(path),
        gzip_bytes=gz,
        gzip_method=method,
        sparsity=sparsity,
        max_abs_error=error,
        tolerance=tolerance if verify else None,
        quantize=quantize,
        sparse_tensors=info.sparse_tensors,
        ops=info.ops,
        resolver=resolver,
        batch_size=batch_size,
        notes=tuple(notes),
    )
