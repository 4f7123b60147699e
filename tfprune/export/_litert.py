"""Running `.tflite` files in LiteRT to check them against the Keras model.

Two op resolvers are tried, in order:

- `AUTO`: the builtin kernels with the default XNNPACK delegate, what most
  applications get;
- `BUILTIN_WITHOUT_DEFAULT_DELEGATES`: the builtin kernels alone. XNNPACK
  refuses some files that the builtin kernels run, e.g. full-integer models
  with sparse weights ("failed to delegate FULLY_CONNECTED").

The first resolver whose outputs are within the tolerance is recorded in the
export result; the file should be run with it.
"""

from __future__ import annotations

import re

import numpy as np

from tfprune.export import _model
from tfprune.export._result import ExportError

RESOLVERS = ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")


def interpreter_module():
    """`ai_edge_litert.interpreter`, or an ImportError that says what to do."""
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:
        raise ImportError(
            "Checking a .tflite file needs LiteRT: `pip install ai-edge-litert` (or "
            "`pip install tfprune[litert]`), or pass `verify=False` to skip the check."
        ) from e
    return interpreter


def _index(name: str) -> int:
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def run(model_bytes: bytes, arrays, resolver: str = "AUTO") -> list:
    """Runs the file's default signature on `arrays` (one per input).

    A signature with a fixed batch size of 1 is run sample by sample.
    Returns the outputs in Keras order (`output_0`, `output_1`, ...).
    """
    lib = interpreter_module()
    interpreter = lib.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=lib.OpResolverType[resolver],
    )
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    names = sorted(details, key=_index)
    if len(names) != len(arrays):
        raise ValueError(
            f"`arrays` must hold one array per input of the file ({len(names)}). "
            f"Received: len(arrays)={len(arrays)}"
        )
    fixed = any(
        len(details[n]["shape_signature"]) and details[n]["shape_signature"][0] == 1 for n in names
    )
    batches = (
        [[a[i : i + 1] for a in arrays] for i in range(len(arrays[0]))] if fixed else [list(arrays)]
    )
    results = []
    for batch in batches:
        outputs = runner(**{n: np.ascontiguousarray(a) for n, a in zip(names, batch)})
        results.append([np.array(outputs[k]) for k in sorted(outputs, key=_index)])
    return [np.concatenate(parts, axis=0) for parts in zip(*results)]


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    # LiteRT joins some of its messages without a separator ("... node #2Node
    # number 4 (...) failed to prepare").
    line = re.sub(r"(\d)(Node number)", r"\1; \2", text[0]) if text else type(error).__name__
    return line[:200]


def verify(model_bytes: bytes, arrays, expected, tolerance: float, label: str):
    """Runs the file and compares its outputs with `expected`.

    Returns:
        `(resolver, max_abs_error, notes)` for the first resolver that runs
        the file within the tolerance.

    Raises:
        ExportError: if no resolver does.
    """
    attempts = []
    for resolver in RESOLVERS:
        try:
            outputs = run(model_bytes, arrays, resolver)
        except Exception as e:  # LiteRT raises RuntimeError/ValueError
            attempts.append(f"{resolver} failed: {_first_line(e)}")
            continue
        error, relative = _model.max_error(expected, outputs)
        if relative <= tolerance:
            notes = []
            if attempts:
                notes.append(
                    f"runs in LiteRT without the default XNNPACK delegate "
                    f"(OpResolverType.{resolver}); {attempts[0]}"
                )
            return resolver, error, notes
        attempts.append(
            f"{resolver}: max abs error {error:.3g} ({relative:.3g} relative) exceeds "
            f"the tolerance {tolerance:g}"
        )
    raise ExportError(
        f"The {label} file does not reproduce the Keras model in LiteRT: " + "; ".join(attempts) + "."
    )
