"""Exports under faults: a full disk, a killed process, failures inside the commit.

Whatever happens, `path` holds the user's previous artifact (byte for byte)
or the complete new one, the error says what went wrong, and what a killed
export leaves beside `path` is removed by the next export to it.
"""

import errno
import json
import os
import re
import shutil
import signal
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import _faults
from tfprune import export
from tfprune.export import _atomic
from tfprune.export import _tflite

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT (ai-edge-litert) is not installed")

NAMES = {"saved_model": "sm", "tflite": "m.tflite"}
X = np.ones((2, 4), dtype="float32")
NEW_Y = X @ np.full((4, 3), -1.0, "float32") + np.arange(3, dtype="float32")


def _model(scale: float):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.set_weights([np.full((4, 3), scale, "float32"), np.arange(3, dtype="float32")])
    return model


def _export(fmt, path, **kwargs):
    """Exports the new model (kernel of -1s) to `path`."""
    return getattr(export, fmt)(_model(-1.0), path, **kwargs)


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """`{format: path}` of an artifact of the old model (kernel of 0.5s)."""
    folder = tmp_path_factory.mktemp("old")
    return {fmt: getattr(export, fmt)(_model(0.5), folder / name).path for fmt, name in NAMES.items()}


def _place(old, fmt, folder):
    """Copies the old artifact of `fmt` into `folder`; returns its path there."""
    path = os.path.join(folder, NAMES[fmt])
    (shutil.copytree if fmt == "saved_model" else shutil.copyfile)(old[fmt], path)
    return path


def _snapshot(path):
    """The bytes of a file, or `{relative path: bytes or None (dir)}` of a directory."""
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            return f.read()
    tree = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            tree[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as data:
                tree[os.path.relpath(os.path.join(root, f), path)] = data.read()
    return tree


def _state(fmt, path, before) -> str:
    """"old" (byte-identical), "new" (loads and runs as the new model), "missing" or why not."""
    if not os.path.lexists(path):
        return "missing"
    if _snapshot(path) == before:
        return "old"
    try:
        if fmt == "saved_model":
            loaded = tf.saved_model.load(path)  # held: `serve` needs its variables
            y = loaded.serve(X).numpy()
        else:
            y = litert.Interpreter(model_path=path).get_signature_runner()(input_0=X)["output_0"]
    except Exception as e:  # a partial artifact
        return f"broken ({type(e).__name__}: {e})"
    return "new" if np.allclose(y, NEW_Y, atol=1e-5) else f"wrong outputs {y.tolist()}"


def _debris(folder) -> list:
    return sorted(e for e in os.listdir(folder) if ".tfprune-" in e)


# --- A full disk ------------------------------------------------------------------------------

def _no_space(where):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where)


def _tf_no_space(where):
    message = f"{where}/variables/variables.index; No space left on device [Op:SaveV2]"
    return tf.errors.ResourceExhaustedError(None, None, message)


class _FullFile:
    """A file open for writing on a disk with room for 100 more bytes."""

    def __init__(self, path, mode="wb"):
        self.path = path
        self.file = open(path, mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        self.file.write(data[:100])
        raise _no_space(self.path)


@pytest.mark.parametrize(
    "fmt, fault, source",
    [
        ("saved_model", _no_space, r"OSError on '.*/\.sm\.tfprune-\w{8}/sm'"),
        ("saved_model", _tf_no_space, "TensorFlow ResourceExhaustedError in SaveV2"),
        ("tflite", _no_space, r"OSError on '.*/scratch-saved_model_batch_any_0'"),
        ("tflite", _tf_no_space, "TensorFlow ResourceExhaustedError in SaveV2"),
        ("tflite", "file", r"OSError on '.*/\.m\.tflite\.tfprune-\w{8}/m\.tflite'"),
    ],
    ids=["saved_model-OSError", "saved_model-tf_error", "tflite-OSError", "tflite-tf_error", "tflite-file"],
)
def test_full_disk_keeps_the_old_artifact(old, tmp_path, monkeypatch, fmt, fault, source):
    path = _place(old, fmt, tmp_path)
    before = _snapshot(path)
    if fault == "file":  # the .tflite file itself
        monkeypatch.setattr(_tflite, "open", _FullFile, raising=False)
    else:  # the SavedModel (for TFLite: the converter's input), half written

        def save(obj, directory, *args, **kwargs):
            os.makedirs(os.path.join(directory, "variables"))
            with open(os.path.join(directory, "saved_model.pb"), "wb") as f:
                f.write(b"\x08\x01" * 50)
            raise fault(directory)

        monkeypatch.setattr(tf.saved_model, "save", save)
    with pytest.raises(export.ExportWriteError) as info:
        _export(fmt, path, overwrite=True)
    error = info.value
    assert isinstance(error, OSError) and isinstance(error, export.ExportError)
    assert error.errno == errno.ENOSPC and error.filename == path
    assert re.fullmatch(
        rf"The export to `path` could not be written: No space left on device \({source}\)\. "
        rf"`path` was left as it was\. Received: path='{re.escape(path)}'",
        str(error),
    ), str(error)
    assert isinstance(error.__cause__, (OSError, tf.errors.ResourceExhaustedError))
    assert _snapshot(path) == before
    assert os.listdir(tmp_path) == [NAMES[fmt]]


def test_full_disk_on_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_tflite, "open", _FullFile, raising=False)
    with pytest.raises(export.ExportWriteError, match=r"Nothing was written at `path`\. Received: path="):
        _export("tflite", tmp_path / "m.tflite", verify=False)
    assert os.listdir(tmp_path) == []


def _fill(path, leave: int) -> None:
    """Fills the disk of `path` with a file, then frees `leave` bytes."""
    with open(path, "wb", buffering=0) as f:
        with pytest.raises(OSError) as info:
            while True:
                f.write(b"\0" * 4096)
    assert info.value.errno == errno.ENOSPC
    os.truncate(path, os.path.getsize(path) - leave)


@pytest.mark.parametrize("fmt", NAMES)
def test_real_full_disk_keeps_the_old_artifact(old, tmp_path, fmt):
    with _faults.tmpfs(tmp_path / "disk", "512k") as disk:
        path = _place(old, fmt, disk)
        before = _snapshot(path)
        _fill(disk / "filler", leave=8192)  # less than a SavedModel
        with pytest.raises(
            export.ExportWriteError,
            match=r"No space left on device \((TensorFlow \w+Error( in \w+)?|OSError on '.*')\)\. "
            r"`path` was left as it was\. Received: path=",
        ) as info:
            _export(fmt, path, overwrite=True)
        assert info.value.errno == errno.ENOSPC
        assert _snapshot(path) == before
        assert sorted(os.listdir(disk)) == sorted(["filler", NAMES[fmt]])
        os.remove(disk / "filler")  # room again: the same export now works
        _export(fmt, path, overwrite=True, verify=False)
        assert _state(fmt, path, before) == "new"
        assert os.listdir(disk) == [NAMES[fmt]]


# --- A killed process -------------------------------------------------------------------------

# Runs in a fresh interpreter: imports TensorFlow once, then forks one child
# per case (before TensorFlow starts any thread pool); each child exports the
# new model with overwrite=True and is SIGKILLed at a stage or after a delay.
_KILLER = """
import os, signal, threading, time, traceback
import numpy as np
import keras
from tfprune import export
from tfprune.export import _atomic


def child(fmt, path, kill, at):
    if kill in ("stage", "stage_without_swap"):
        _atomic._reached = lambda stage: stage == at and os.kill(os.getpid(), signal.SIGKILL)
    if kill == "stage_without_swap":
        rename = _atomic._rename
        _atomic._rename = lambda s, d, flags=0: flags != _atomic._EXCHANGE and rename(s, d, flags)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.set_weights([np.full((4, 3), -1.0, "float32"), np.arange(3, dtype="float32")])
    if kill == "after_ms":
        threading.Timer(at / 1000, os.kill, (os.getpid(), signal.SIGKILL)).start()
    getattr(export, fmt)(model, path, overwrite=True)


results = []
for case in CASES:
    pid = os.fork()
    if pid == 0:
        try:
            child(*case)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    deadline = time.monotonic() + 90
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            results.append(os.waitstatus_to_exitcode(status))  # -9: SIGKILL
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            results.append("hung")
            break
        time.sleep(0.01)
json.dump(results, open(RESULT, "w"))
"""


def test_sigkill_leaves_the_old_or_the_new_artifact(old, tmp_path, run_python):
    cases = [  # (format, how, when, the artifact at `path` afterwards)
        ("saved_model", "stage", "staged", "old"),
        ("saved_model", "stage", "written", "old"),
        ("saved_model", "stage", "committed", "new"),
        ("saved_model", "stage_without_swap", "moved_aside", "missing"),
        ("saved_model", "after_ms", 250, "old or new"),
        ("tflite", "stage", "written", "old"),
        ("tflite", "stage", "committed", "new"),
        ("tflite", "after_ms", 400, "old or new"),
    ]
    paths, before = [], {fmt: _snapshot(old[fmt]) for fmt in NAMES}
    for i, (fmt, *_) in enumerate(cases):
        os.mkdir(tmp_path / f"case{i}")
        paths.append(_place(old, fmt, tmp_path / f"case{i}"))
    code = f"CASES = json.loads({json.dumps([[c[0], p, c[1], c[2]] for c, p in zip(cases, paths)])!r})\n"
    statuses = run_python(code + _KILLER, timeout=300)
    assert len(statuses) == len(cases) and "hung" not in statuses, statuses
    for (fmt, how, when, expected), path, status in zip(cases, paths, statuses):
        label = f"{fmt} killed at {when}"
        folder = os.path.dirname(path)
        state = _state(fmt, path, before[fmt])
        if how == "after_ms":
            assert state in ("old", "new"), label
            assert status in (-signal.SIGKILL, 0) and (status == -signal.SIGKILL or state == "new"), label
        else:
            assert status == -signal.SIGKILL and state == expected, (label, status, state)
            assert len(_debris(folder)) == 1, label  # the killed export's staging dir
        if expected == "missing":
            # Killed between moving the old directory aside and the new one in
            # (file systems without an atomic swap): the next export puts the
            # old one back, so a plain export finds `path` taken.
            (staging,) = _debris(folder)
            assert _snapshot(os.path.join(folder, staging, "previous")) == before[fmt]
            with pytest.raises(ValueError, match="already exists"):
                _export(fmt, path, verify=False)
            assert _state(fmt, path, before[fmt]) == "old" and _debris(folder) == [], label
            continue
        _export(fmt, path, overwrite=True, verify=False)
        assert _state(fmt, path, before[fmt]) == "new", label
        left = _debris(folder)
        if how == "after_ms":  # a kill before the staging dir got its lock: kept a minute
            left = [d for d in left if "lock" in os.listdir(os.path.join(folder, d))]
        assert left == [], label


# --- Debris of killed exports -----------------------------------------------------------------

def _staging_dir(folder, entry, files=("m.tflite",), lock=True, age_s=0.0):
    """A staging dir as a killed export leaves it (`lock` present but not held)."""
    directory = os.path.join(folder, entry)
    os.mkdir(directory)
    for name in files + (("lock",) if lock else ()):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(b"partial")
    os.mkdir(os.path.join(directory, "scratch-saved_model_batch_any_0"))
    if age_s:
        then = time.time() - age_s
        os.utime(directory, (then, then))
    return directory


def test_next_export_removes_only_stale_debris(old, tmp_path):
    path = _place(old, "tflite", tmp_path)
    # An export to the same path, running in this process while the next one starts.
    with _atomic.Staging(path, overwrite=True) as running:
        with open(running.target, "wb") as f:
            f.write(b"in progress")
        removed = [
            _staging_dir(tmp_path, ".m.tflite.tfprune-dead0001"),  # killed: its lock is free
            _staging_dir(tmp_path, ".m.tflite.tfprune-dead0002", files=("m.tflite", "previous")),
            _staging_dir(tmp_path, ".m.tflite.tfprune-dead0003", lock=False, age_s=120),  # never locked
        ]
        kept = [
            _staging_dir(tmp_path, ".m.tflite.tfprune-young001", lock=False),  # may be starting
            _staging_dir(tmp_path, ".m.tflite.tfprune-user0001", files=("m.tflite", "notes.txt")),
            _staging_dir(tmp_path, ".n.tflite.tfprune-dead0004"),  # another path's
            _staging_dir(tmp_path, ".m.tflite.tfprune-backup"),  # not our name pattern
            _staging_dir(tmp_path, ".m.tflite.tfprune-dead0005.old"),
            shutil.copytree(removed[0], removed[0] + "-target"),
        ]
        os.symlink(kept[-1], tmp_path / ".m.tflite.tfprune-link0001")
        kept.append(str(tmp_path / ".m.tflite.tfprune-link0001"))
        for name in [".m.tflite.tfprune-file0001", "m.tflite.tfprune-dead0006", "m.tflite.bak"]:
            (tmp_path / name).write_bytes(b"the user's")
            kept.append(str(tmp_path / name))
        if os.geteuid() == 0:  # another user's
            kept.append(_staging_dir(tmp_path, ".m.tflite.tfprune-other001"))
            os.chown(kept[-1], 65534, 65534)
        snapshots = {p: _snapshot(p) for p in kept}

        _export("tflite", path, overwrite=True, verify=False)
        assert _snapshot(running.target) == b"in progress"
    assert not os.path.exists(running.dir)
    assert _state("tflite", path, _snapshot(old["tflite"])) == "new"
    assert not any(os.path.lexists(p) for p in removed)
    assert {p: _snapshot(p) for p in kept} == snapshots
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(p) for p in kept] + ["m.tflite"])


# --- Failures inside the commit ---------------------------------------------------------------

def _step(src, dst, flags) -> str:
    """Which move of `Staging.commit` (or of the clean-up) a rename is."""
    if os.path.basename(src) == "previous":
        return "back"  # the old artifact put back
    if flags == _atomic._NOREPLACE:
        return "new"  # to a path expected to be free
    if flags == _atomic._EXCHANGE:
        return "swap"  # the new and the old artifact, in one step
    if os.path.basename(dst) == "previous":
        return "aside"  # the old artifact into the staging dir
    return "in" if os.path.isdir(src) else "replace"


@pytest.fixture
def moves(monkeypatch):
    """Records each rename of the commit and fails those in `moves.fail`.

    With `moves.swap = False` the file system cannot swap two entries.
    """

    moves = types.SimpleNamespace(calls=[], fail=set(), swap=True)
    rename = _atomic._rename

    def faulty(src, dst, flags=0):
        step = _step(src, dst, flags)
        moves.calls.append(step)
        if step in moves.fail:
            raise OSError(errno.EIO, os.strerror(errno.EIO), src, None, dst)
        if step == "swap" and not moves.swap:
            return False
        return rename(src, dst, flags)

    monkeypatch.setattr(_atomic, "_rename", faulty)
    return moves


@pytest.mark.parametrize(
    "fmt, exists, swap, fail, calls, outcome",
    [
        ("saved_model", False, True, {"new"}, ["new"], "missing"),
        ("saved_model", True, True, {"swap"}, ["new", "swap"], "old"),
        ("saved_model", True, False, {"aside"}, ["new", "swap", "aside"], "old"),
        ("saved_model", True, False, {"in"}, ["new", "swap", "aside", "in", "back"], "old"),
        ("saved_model", True, False, set(), ["new", "swap", "aside", "in"], "new"),
        ("tflite", True, True, {"swap"}, ["new", "swap"], "old"),
        ("tflite", True, False, {"replace"}, ["new", "swap", "replace"], "old"),
        ("tflite", True, False, set(), ["new", "swap", "replace"], "new"),
    ],
    ids=[
        "new-fails", "swap-fails", "aside-fails", "in-fails-put-back", "no-swap-dir",
        "tflite-swap-fails", "tflite-replace-fails", "tflite-no-swap",
    ],
)
def test_commit_failure_keeps_the_old_artifact(old, tmp_path, moves, fmt, exists, swap, fail, calls, outcome):
    path = _place(old, fmt, tmp_path) if exists else str(tmp_path / NAMES[fmt])
    before = _snapshot(old[fmt])
    moves.swap, moves.fail = swap, fail
    if fail:
        state = "`path` was left as it was" if exists else "Nothing was written at `path`"
        with pytest.raises(
            export.ExportWriteError,
            match=rf"could not be written: Input/output error \(OSError on '.*'\)\. {state}\. Received: path=",
        ) as info:
            _export(fmt, path, overwrite=True, verify=False)
        assert info.value.errno == errno.EIO
    else:
        _export(fmt, path, overwrite=True, verify=False)
    assert moves.calls == calls
    assert _state(fmt, path, before) == outcome
    assert os.listdir(tmp_path) == ([] if outcome == "missing" else [NAMES[fmt]])


def test_failed_rollback_keeps_the_old_artifact_for_the_next_export(old, tmp_path, moves):
    path = _place(old, "saved_model", tmp_path)
    before = _snapshot(path)
    moves.swap, moves.fail = False, {"in", "back"}
    with pytest.raises(export.ExportWriteError, match=r"could not be put back .*; it is kept at '(.*)' and the next") as info:
        _export("saved_model", path, overwrite=True, verify=False)
    kept = re.search(r"kept at '(.*?)'", str(info.value)).group(1)
    assert moves.calls == ["new", "swap", "aside", "in", "back", "back"]  # tried again on exit
    assert not os.path.lexists(path) and _snapshot(kept) == before
    assert _debris(tmp_path) == [os.path.basename(os.path.dirname(kept))]
    moves.fail = set()
    with pytest.raises(ValueError, match="already exists"):  # it was put back first
        _export("saved_model", path, verify=False)
    assert _snapshot(path) == before and os.listdir(tmp_path) == ["sm"]


@pytest.mark.parametrize("stage", ["staged", "written", "moved_aside"])
def test_interrupt_at_a_stage_keeps_the_old_artifact(old, tmp_path, moves, monkeypatch, stage):
    path = _place(old, "saved_model", tmp_path)
    before = _snapshot(path)
    moves.swap = False

    def interrupt(reached):
        if reached == stage:
            raise KeyboardInterrupt

    monkeypatch.setattr(_atomic, "_reached", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _export("saved_model", path, overwrite=True, verify=False)
    assert _snapshot(path) == before and os.listdir(tmp_path) == ["sm"]


def test_path_created_during_the_export_is_not_replaced(tmp_path, monkeypatch):
    path = str(tmp_path / "m.tflite")

    def user_writes(stage):
        if stage == "written":
            with open(path, "wb") as f:
                f.write(b"the user's")

    monkeypatch.setattr(_atomic, "_reached", user_writes)
    with pytest.raises(ValueError, match=rf"already exists; pass `overwrite=True`.*Received: path='{re.escape(path)}'$"):
        _export("tflite", path, verify=False)
    assert os.listdir(tmp_path) == ["m.tflite"] and _snapshot(path) == b"the user's"


def test_staging_left_after_a_commit_is_removed_next_time(old, tmp_path, monkeypatch):
    path = _place(old, "saved_model", tmp_path)
    monkeypatch.setattr(_atomic, "_remove_tree", lambda directory: None)  # e.g. a busy file
    _export("saved_model", path, overwrite=True, verify=False)
    assert len(_debris(tmp_path)) == 1
    monkeypatch.undo()
    _export("saved_model", path, overwrite=True, verify=False)
    assert _debris(tmp_path) == [] and _state("saved_model", path, None) == "new"
