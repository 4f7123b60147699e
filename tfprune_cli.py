"""The `tfprune` command: its arguments, usage errors and start-up.

```
tfprune inspect model.keras            # per-tensor sparsity of a .keras file
tfprune inspect exported_model         # ... of a SavedModel directory
tfprune inspect model.tflite           # ... of a .tflite file, with its ops
tfprune export model.keras --saved-model exported_model --tflite model.tflite
tfprune export model.keras --tflite model.tflite --quantize int8 \\
    --representative-data calibration.npy
tfprune oneshot model.keras --data calibration.npy --method sparsegpt \\
    --sparsity 0.5 -o pruned.keras      # one-shot pruning from calibration data
tfprune --import my_layers.py export model.keras --tflite model.tflite
                                       # a model with custom (registered) layers
tfprune --verbose inspect model.keras  # with TensorFlow's own log messages
```

This module lives beside the `tfprune` package, not in it: importing the
package imports Keras and TensorFlow (seconds), so help and usage errors are
answered here before any of them is imported. Only a command that runs
imports `tfprune` and its implementation, `tfprune.cli`. Unless `--verbose`
is given, TensorFlow is then imported without its start-up log lines, and
`TF_CPP_MIN_LOG_LEVEL=3` (if the environment does not set it) silences its
C++ logging afterwards.

Exit status: 0 on success, 2 for a usage error, 1 for any other error
(missing or corrupt file, failed export), reported on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback

_QUANTIZE = ("dynamic", "int8", "float16")
_METHODS = ("magnitude", "wanda", "sparsegpt")


def _granularity(text: str) -> tuple[int, int] | None:
    """`--granularity`: None for 'unstructured', else the (N, M) of 'N:M'."""
    if text == "unstructured":
        return None
    n, sep, m = text.partition(":")
    if sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m):
        return int(n), int(m)
    raise argparse.ArgumentTypeError(
        f"must be 'unstructured' or N:M with 0 < N < M, not {text!r}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tfprune` command.

    Returns:
        An `argparse.ArgumentParser`; its namespaces name the command in
        `command` and are what `tfprune.cli.run` takes.
    """
    parser = argparse.ArgumentParser(
        prog="tfprune",
        description="Inspect saved models and export pruned Keras models.",
    )
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import this Python module (a dotted name, or a .py file) first, so that the "
        "custom layers it registers load; may be repeated",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's log messages (by default its start-up lines are hidden and "
        "TF_CPP_MIN_LOG_LEVEL, unless set, is 3)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    inspect = commands.add_parser(
        "inspect",
        help="show per-tensor sparsity and sizes of a saved model",
        description="Show the tensors (shape, storage, bytes, sparsity) and size of a "
        ".keras file, a SavedModel directory or a .tflite file (with its ops).",
    )
    inspect.add_argument("path", metavar="PATH", help=".keras file, SavedModel directory or .tflite file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")

    export = commands.add_parser(
        "export",
        help="export a .keras model to a SavedModel and/or a .tflite file",
        description="Strip a (pruned) .keras model and export it. Every artifact is "
        "checked against the Keras model before it is moved into place.",
    )
    export.add_argument("model", metavar="MODEL", help="the .keras file to export")
    export.add_argument("--saved-model", metavar="DIR", help="write a SavedModel directory here")
    export.add_argument("--tflite", metavar="FILE", help="write a .tflite file here")
    export.add_argument(
        "--quantize", choices=_QUANTIZE, default=None,
        help="TFLite quantization (default: none, float32)",
    )
    export.add_argument(
        "--representative-data", metavar="FILE",
        help="inputs to calibrate --quantize int8: a .npy array, or a .npz with one array "
        "per input (in name order)",
    )
    export.add_argument(
        "--dense", action="store_true", help="do not store pruned TFLite tensors sparse"
    )
    export.add_argument("--shrink", action="store_true", help="remove dead units first")
    export.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    export.add_argument(
        "--no-verify", action="store_true", help="skip checking the outputs of the artifacts"
    )
    export.add_argument("--json", action="store_true", help="print JSON instead of text")

    oneshot = commands.add_parser(
        "oneshot",
        help="prune a trained .keras model in one shot from calibration data",
        description="Prune a trained .keras model with Magnitude, Wanda or SparseGPT from "
        "calibration inputs, and save it (stripped: a plain Keras model) to a .keras file.",
    )
    oneshot.add_argument("model", metavar="MODEL", help="the trained .keras file")
    oneshot.add_argument(
        "--data", metavar="FILE",
        help="calibration inputs: a .npy array, or a .npz with one array per input, "
        "named as the model's inputs (required except for --method magnitude)",
    )
    oneshot.add_argument("--method", choices=_METHODS, default="sparsegpt",
                         help="the one-shot method (default: sparsegpt)")
    oneshot.add_argument("--sparsity", type=float, default=None,
                         help="fraction of each kernel to prune (default: 0.5, or 1 - N/M)")
    oneshot.add_argument("--granularity", type=_granularity, default="unstructured", metavar="G",
                         help="'unstructured' (default) or N:M, e.g. 2:4")
    oneshot.add_argument("--batch-size", type=int, default=None, metavar="N",
                         help="calibration samples per batch (default: 32)")
    oneshot.add_argument("-o", "--output", required=True, metavar="FILE",
                         help="the .keras file to write")
    oneshot.add_argument("--keep-wrappers", action="store_true",
                         help="save the wrapped model (masks kept, to fine-tune with "
                         "tfprune.PruningCallback) instead of the stripped one")
    oneshot.add_argument("--overwrite", action="store_true", help="replace an existing output")
    oneshot.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What makes parsed arguments unusable where argparse cannot tell, or None."""
    if args.command == "export":
        if not args.saved_model and not args.tflite:
            return "give at least one of --saved-model DIR and --tflite FILE"
        if args.quantize and not args.tflite:
            return "--quantize applies to --tflite, which was not given"
        if args.quantize == "int8" and not args.representative_data:
            return "--quantize int8 needs --representative-data FILE (.npy or .npz)"
    elif args.command == "oneshot":
        if args.method != "magnitude" and not args.data:
            return f"--method {args.method} needs --data FILE (.npy or .npz)"
        if not args.output.endswith(".keras"):
            return f"-o/--output must be a .keras file, not {args.output!r}"
    return None


@contextlib.contextmanager
def _quiet_start_up():
    """Imports within are TensorFlow's first one, without its log lines.

    `TF_CPP_MIN_LOG_LEVEL` is set to 3 unless the environment sets it; the
    lines TensorFlow's libraries print while they load ignore it
    (tensorflow/tensorflow#100442), so the process's stderr (file descriptor
    2) goes to `os.devnull` meanwhile. Nothing changes in a process that
    imported TensorFlow already: its logging is set by then.
    """
    if "tensorflow" in sys.modules:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Runs the `tfprune` command line; returns the exit status.

    Help and usage errors are answered without importing `tfprune`, Keras
    or TensorFlow. A command imports `tfprune.cli` and runs there; without
    `--verbose`, TensorFlow's start-up log lines are hidden (see the module
    docstring).

    Args:
        argv: the arguments (without the program name). Defaults to
            `sys.argv[1:]`.

    Returns:
        0 on success, 2 for a usage error (argparse's usage line and the
        message on stderr), 1 for any other error (one line on stderr, the
        traceback too with `--traceback`).

    Example:

    ```python
    import tfprune_cli

    status = tfprune_cli.main(["inspect", "model.keras", "--json"])
    ```
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) and usage errors (2)
        return int(e.code or 0)
    problem = _usage_problem(args)
    if problem:
        parser.print_usage(sys.stderr)
        print(f"tfprune {args.command}: error: {problem}", file=sys.stderr)
        return 2
    try:
        with contextlib.nullcontext() if args.verbose else _quiet_start_up():
            # Here, not at the top: `tfprune` imports TensorFlow.
            from tfprune import cli
        return cli.run(args)
    except KeyboardInterrupt:  # pragma: no cover
        print("tfprune: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.traceback:
            traceback.print_exc()
        print(f"tfprune {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
