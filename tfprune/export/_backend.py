"""Exports from a Keras process on another backend (JAX, torch).

SavedModel and TFLite conversion trace the model with TensorFlow, which only
a TensorFlow-backend Keras can do. On another backend, `tfprune.export`
saves the model as `.keras` into a temporary folder and runs the same export
in a child Python process with `KERAS_BACKEND=tensorflow`; the artifact is
checked there against the Keras model as usual (the same weights, loaded on
TensorFlow), and the `ExportResult` (or the error) comes back. The child gets
this process's `sys.path` and imports the modules that define the model's
own layer classes first, so that a model of custom registered layers loads
there as it does here.

Example (on JAX, the call is the same as on TensorFlow):

```python
result = tfprune.export.tflite(pruned, "model.tflite", quantize="dynamic")
```
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import tempfile

from tfprune._base import backend
from tfprune._base import walk
from tfprune._base.validation import received


def elsewhere(kind: str, model, path, options: dict):
    """Runs `tfprune.export.<kind>(model, path, **options)` in a TensorFlow
    process when this one is on another backend; None on TensorFlow."""
    if backend.exports_in_process():
        return None
    for name, value in options.items():
        if callable(value):
            raise TypeError(
                f"`{name}` must be an array (or a list of arrays) when exporting from the "
                f"'{backend.name()}' backend: the export runs in a TensorFlow "
                f"process, which a Python callable cannot reach. {received(name, value)}"
            )
    with tempfile.TemporaryDirectory(prefix="tfprune-export-") as tmp:
        source = model
        if not isinstance(model, (str, os.PathLike)):
            source = os.path.join(tmp, "model.keras")
            model.save(source)
        job = os.path.join(tmp, "job.pkl")
        with open(job, "wb") as f:
            pickle.dump({"kind": kind, "model": os.fspath(source), "path": path,
                         "options": options, "out": os.path.join(tmp, "out.pkl"),
                         "sys_path": list(sys.path), "modules": _custom_modules(model)}, f)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        child = subprocess.run([sys.executable, "-m", "tfprune.export._backend", job],
                               env=env, capture_output=True, text=True)
        out = os.path.join(tmp, "out.pkl")
        if not os.path.isfile(out):
            raise RuntimeError(
                f"The TensorFlow process that exports for the '{backend.name()}' "
                f"backend stopped with exit status {child.returncode}:\n{child.stderr[-3000:]}"
            )
        with open(out, "rb") as f:
            ok, value = pickle.load(f)
    if ok:
        return value
    raise value


def _custom_modules(model) -> list:
    """Modules defining the model's own layer classes (not Keras' or
    tfprune's): the child imports them first, so that their registered
    classes load there too."""
    if isinstance(model, (str, os.PathLike)):
        return []
    modules = {type(layer).__module__ for _, _, layer in walk.walk(model)}
    return sorted(m for m in modules if m.split(".")[0] not in ("keras", "tfprune", "tf_keras")
                  and m != "__main__")


def _child(job_path: str) -> None:
    with open(job_path, "rb") as f:
        job = pickle.load(f)
    sys.path[:0] = [p for p in job.get("sys_path", []) if p not in sys.path]
    for module in job.get("modules", []):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - loading the model says what is missing
            pass
    import tfprune.export

    try:
        value = (True, getattr(tfprune.export, job["kind"])(job["model"], job["path"],
                                                             **job["options"]))
        pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - carried back to the caller
        try:
            pickle.loads(pickle.dumps(exc))
            value = (False, exc)
        except Exception:  # noqa: BLE001 - not picklable: its type and message
            value = (False, RuntimeError(f"{type(exc).__name__}: {exc}"))
    with open(job["out"], "wb") as f:
        pickle.dump(value, f)


if __name__ == "__main__":
    _child(sys.argv[1])
