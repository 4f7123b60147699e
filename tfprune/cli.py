"""The `tfprune` command line: inspect, export and one-shot prune saved models.

```
tfprune inspect model.keras            # per-tensor sparsity of a .keras file
tfprune inspect exported/model         # ... of a SavedModel directory
tfprune inspect model.tflite           # ... of a .tflite file, with its ops
tfprune export model.keras --saved-model exported/model --tflite model.tflite
tfprune export model.keras --tflite model.tflite --quantize int8 \\
    --representative-data calibration.npy
tfprune oneshot model.keras --data calibration.npy --method sparsegpt \\
    --sparsity 0.5 -o pruned.keras      # one-shot pruning from calibration data
tfprune --import my_layers.py export model.keras --tflite model.tflite
                                       # a model with custom (registered) layers
```

Exit status: 0 on success, 2 for a usage error, 1 for any other error
(missing or corrupt file, failed export), reported on one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback

_QUANTIZE = ("dynamic", "int8", "float16")
_METHODS = ("magnitude", "wanda", "sparsegpt")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `tfprune` command."""
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
    oneshot.add_argument("--granularity", default="unstructured", metavar="G",
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


def _read_arrays(path: str):
    """The array of a `.npy` file, or the arrays of a `.npz` (name order)."""
    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a .npy or .npz file ({type(e).__name__}: {e})") from e
    if isinstance(data, np.ndarray):
        return data
    with data:
        return [data[k] for k in sorted(data.files)]


def _import(module: str) -> None:
    """Imports `module` (a dotted name, or the path of a .py file), with the
    working directory (or the file's directory) on `sys.path`."""
    import importlib
    import importlib.util

    if module.endswith(".py"):
        if not os.path.isfile(module):
            raise FileNotFoundError(f"--import {module}: no such file")
        directory = os.path.dirname(os.path.abspath(module))
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = os.path.splitext(os.path.basename(module))[0]
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, module)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
        return
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"--import {module}: {e}") from e


def _inspect(args) -> int:
    from tfprune.export import inspect

    if not os.path.exists(args.path):
        raise FileNotFoundError(f"{args.path}: no such file or directory")
    result = inspect(args.path)
    if args.json:
        document = dataclasses.asdict(result)
        document["sparsity"] = result.sparsity
        print(json.dumps(document, indent=2))
    else:
        print(result)
    return 0


def _export(args) -> int:
    if not args.saved_model and not args.tflite:
        raise _UsageError("give at least one of --saved-model DIR and --tflite FILE")
    if args.quantize and not args.tflite:
        raise _UsageError("--quantize applies to --tflite, which was not given")
    if args.quantize == "int8" and not args.representative_data:
        raise _UsageError("--quantize int8 needs --representative-data FILE (.npy or .npz)")
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such file")
    if not args.model.endswith(".keras"):
        raise ValueError(f"{args.model}: MODEL must be a .keras file")
    for output in (args.saved_model, args.tflite):
        if output and os.path.lexists(output) and not args.overwrite:
            raise ValueError(f"{output} already exists; pass --overwrite to replace it")

    import keras

    from tfprune import export

    try:
        model = keras.saving.load_model(args.model, compile=False)
    except Exception as e:
        raise ValueError(f"{args.model}: could not load the model ({type(e).__name__}: {e})") from e
    data = _read_arrays(args.representative_data) if args.representative_data else None
    results = []
    if args.saved_model:
        results.append(
            export.saved_model(
                model, args.saved_model, overwrite=args.overwrite, shrink=args.shrink,
                verify=not args.no_verify,
            )
        )
    if args.tflite:
        results.append(
            export.tflite(
                model, args.tflite, quantize=args.quantize, sparse=not args.dense,
                representative_data=data, overwrite=args.overwrite, shrink=args.shrink,
                verify=not args.no_verify,
            )
        )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print("\n".join(str(r) for r in results))
    return 0


def _granularity(text: str):
    from tfprune import granularity

    if text == "unstructured":
        return granularity.Unstructured()
    n, sep, m = text.partition(":")
    if sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m):
        return granularity.NM(int(n), int(m))
    raise _UsageError(f"--granularity must be 'unstructured' or N:M with 0 < N < M, not {text!r}")


def _oneshot(args) -> int:
    if args.method != "magnitude" and not args.data:
        raise _UsageError(f"--method {args.method} needs --data FILE (.npy or .npz)")
    if not args.output.endswith(".keras"):
        raise _UsageError(f"-o/--output must be a .keras file, not {args.output!r}")
    granularity = _granularity(args.granularity)
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such file")
    if not args.model.endswith(".keras"):
        raise ValueError(f"{args.model}: MODEL must be a .keras file")
    if os.path.lexists(args.output) and not args.overwrite:
        raise ValueError(f"{args.output} already exists; pass --overwrite to replace it")

    import keras
    import numpy as np

    import tfprune

    try:
        model = keras.saving.load_model(args.model, compile=False)
    except Exception as e:
        raise ValueError(f"{args.model}: could not load the model ({type(e).__name__}: {e})") from e
    data = None
    if args.data:
        _read_arrays(args.data)  # a clear error for a file that is not an array
        loaded = np.load(args.data, allow_pickle=False)
        data = loaded if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files}
    method = {"magnitude": tfprune.oneshot.Magnitude, "wanda": tfprune.oneshot.Wanda,
              "sparsegpt": tfprune.oneshot.SparseGPT}[args.method](
                  sparsity=args.sparsity, granularity=granularity)
    pruned, report = tfprune.prune_oneshot(model, method, data, batch_size=args.batch_size,
                                           verbose=0, return_report=True)
    result = pruned if args.keep_wrappers else tfprune.strip(pruned)
    directory = os.path.dirname(os.path.abspath(args.output))
    staging = os.path.join(directory, f".{os.path.basename(args.output)}.{os.getpid()}.keras")
    try:
        result.save(staging)
        os.replace(staging, args.output)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    if args.json:
        print(json.dumps(dict(report.to_dict(), output=args.output), indent=2))
    else:
        print(f"{report}\nwrote {args.output}")
    return 0


class _UsageError(Exception):
    pass


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def main(argv=None) -> int:
    """Runs the command line; returns the exit status.

    Args:
        argv: the arguments (without the program name). Defaults to
            `sys.argv[1:]`.

    Returns:
        0 on success, 2 for a usage error, 1 for any other error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) and usage errors (2)
        return int(e.code or 0)
    handler = {"inspect": _inspect, "export": _export, "oneshot": _oneshot}[args.command]
    try:
        for module in args.imports:
            _import(module)
        return handler(args)
    except _UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"tfprune {args.command}: error: {e}", file=sys.stderr)
        return 2
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
