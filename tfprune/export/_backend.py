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

The child stays up for the next export (starting Python and importing
TensorFlow takes seconds): it is started again when it stopped, when this
process's `sys.path` or environment changed, when a custom module it
imported was changed or replaced, and in a process forked from this one. It
ends with this process.

Example (on JAX, the call is the same as on TensorFlow):

```python
result = tfprune.export.tflite(pruned, "model.tflite", quantize="dynamic")
```
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import subprocess
import sys
import tempfile
import threading

from tfprune._base import backend
from tfprune._base import walk
from tfprune._base.validation import received

#: Starts the line the child writes when a job is done (the job's path follows).
_DONE = "tfprune-export-job-done"
#: The folder that holds this `tfprune` package.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        modules = _custom_modules(model)
        with open(job, "wb") as f:
            pickle.dump({"kind": kind, "model": os.fspath(source), "path": path,
                         "options": options, "out": os.path.join(tmp, "out.pkl"),
                         "sys_path": list(sys.path), "modules": modules}, f)
        status, stderr = _run(job, modules)
        out = os.path.join(tmp, "out.pkl")
        if not os.path.isfile(out):
            raise RuntimeError(
                f"The TensorFlow process that exports for the '{backend.name()}' "
                f"backend stopped with exit status {status}:\n{stderr}"
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


def _module_files(modules) -> dict:
    """`{module: (file, modification time)}` of modules as this process has them."""
    files = {}
    for name in modules:
        file = getattr(sys.modules.get(name), "__file__", None)
        try:
            files[name] = (file, os.stat(file).st_mtime_ns if file else None)
        except OSError:
            files[name] = (file, None)
    return files


class _Child:
    """The TensorFlow process: reads job paths on its stdin, answers `_DONE`
    and the path on its stdout once the job's result is written; its stderr
    goes to a temporary file, emptied before each job."""

    def __init__(self):
        self.pid = os.getpid()
        self.sys_path, self.environ = list(sys.path), dict(os.environ)
        self.modules = {}
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # This tfprune, wherever the child's working directory would find one.
        serve = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
                 "from tfprune.export import _backend; _backend._serve()")
        self.process = subprocess.Popen(
            [sys.executable, "-c", serve], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, env=env, text=True)

    def serves(self, modules: dict) -> bool:
        """Whether this child can run a job now (the same process, paths,
        environment and custom modules as when it started)."""
        return (self.pid == os.getpid() and self.process.poll() is None
                and self.sys_path == sys.path and self.environ == dict(os.environ)
                and all(self.modules.get(m, f) == f for m, f in modules.items()))

    def run(self, job: str, modules: dict) -> tuple:
        """`(exit status or None, stderr tail)`; the status is None while the
        child runs on."""
        self.modules.update(modules)
        self.log.seek(0)
        self.log.truncate()
        try:
            self.process.stdin.write(job + "\n")
            self.process.stdin.flush()
            done = any(line.strip() == f"{_DONE} {job}" for line in self.process.stdout)
        except OSError:
            done = False
        if done:
            return None, ""
        status = self.process.wait()
        self.log.seek(0)
        return status, self.log.read().decode("utf-8", "replace")[-3000:]

    def close(self, kill: bool = False):
        """Ends the child: its stdin closed (it exits), or killed."""
        if self.pid != os.getpid():
            return
        try:
            if kill:
                self.process.kill()
            self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.log.close()


_lock = threading.Lock()
_child_process = None


def _run(job: str, modules: list) -> tuple:
    """Runs a job in the child, started (again) where needed."""
    global _child_process
    files = _module_files(modules)
    with _lock:
        if _child_process is None or not _child_process.serves(files):
            if _child_process is not None:
                _child_process.close()
            _child_process = _Child()
        try:
            status, stderr = _child_process.run(job, files)
        except BaseException:  # interrupted: the job may still run there
            _child_process.close(kill=True)
            _child_process = None
            raise
        if status is not None:
            _child_process.close()
            _child_process = None
        return status, stderr


@atexit.register
def _close():
    if _child_process is not None:
        _child_process.close()


def _job(job_path: str) -> None:
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


def _serve() -> None:
    """The child's loop: one job per line of stdin, until it closes. Its
    stdout carries only the `_DONE` lines (what else is printed there goes
    to stderr)."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import keras

    for line in sys.stdin:
        _job(line.strip())
        keras.backend.clear_session()  # as a fresh process: no state kept from this job
        answers.write(f"{_DONE} {line.strip()}\n")
        answers.flush()
