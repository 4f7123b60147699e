"""The commands of the `tfprune` command line: inspect, export and oneshot.

`tfprune_cli` (a module beside this package, so that help and usage errors
need no TensorFlow) parses the command line and checks its usage; `run`
executes a parsed command. `main` is `tfprune_cli.main`, the whole command
line:

```python
from tfprune import cli

status = cli.main(["inspect", "model.keras", "--json"])   # 0, 1 or 2
```
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import sys

import keras
import numpy as np

from tfprune import export
from tfprune import granularity
from tfprune import oneshot
from tfprune._training.strip import strip
from tfprune_cli import main

__all__ = ["main", "run"]


def _read_arrays(path: str):
    """The array of a `.npy` file, or the arrays of a `.npz` (name order)."""
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
    if not os.path.exists(args.path):
        raise FileNotFoundError(f"{args.path}: no such file or directory")
    result = export.inspect(args.path)
    if args.json:
        document = dataclasses.asdict(result)
        document["sparsity"] = result.sparsity
        print(json.dumps(document, indent=2))
    else:
        print(result)
    return 0


def _export(args) -> int:
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such file")
    if not args.model.endswith(".keras"):
        raise ValueError(f"{args.model}: MODEL must be a .keras file")
    for output in (args.saved_model, args.tflite):
        if output and os.path.lexists(output) and not args.overwrite:
            raise ValueError(f"{output} already exists; pass --overwrite to replace it")

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


def _oneshot(args) -> int:
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"{args.model}: no such file")
    if not args.model.endswith(".keras"):
        raise ValueError(f"{args.model}: MODEL must be a .keras file")
    if os.path.lexists(args.output) and not args.overwrite:
        raise ValueError(f"{args.output} already exists; pass --overwrite to replace it")

    try:
        model = keras.saving.load_model(args.model, compile=False)
    except Exception as e:
        raise ValueError(f"{args.model}: could not load the model ({type(e).__name__}: {e})") from e
    data = None
    if args.data:
        _read_arrays(args.data)  # a clear error for a file that is not an array
        loaded = np.load(args.data, allow_pickle=False)
        data = loaded if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files}
    units = granularity.NM(*args.granularity) if args.granularity else granularity.Unstructured()
    method = {"magnitude": oneshot.Magnitude, "wanda": oneshot.Wanda,
              "sparsegpt": oneshot.SparseGPT}[args.method](sparsity=args.sparsity, granularity=units)
    pruned, report = oneshot.prune_oneshot(model, method, data, batch_size=args.batch_size,
                                           verbose=0, return_report=True)
    result = pruned if args.keep_wrappers else strip(pruned)
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


_COMMANDS = {"inspect": _inspect, "export": _export, "oneshot": _oneshot}


def run(args: argparse.Namespace) -> int:
    """Runs a parsed command (a namespace of `tfprune_cli.build_parser`).

    The modules of `--import` are imported first. Errors propagate;
    `tfprune_cli.main` reports them.

    Args:
        args: the parsed arguments, their usage already checked.

    Returns:
        0.
    """
    for module in args.imports:
        _import(module)
    return _COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
