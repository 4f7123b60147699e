"""Atomic writes: build an artifact next to its destination, then move it.

Every export writes into a private staging directory created beside the
destination (`.NAME.tfprune-XXXXXXXX`: same file system, so moves are
renames). The artifact is moved into place only once it is complete and
verified, with one rename that never replaces anything, or, with
`overwrite=True` over an existing destination, that swaps the old and the
new artifact (`renameat2(RENAME_EXCHANGE)` on Linux). The destination then
holds the old or the complete new artifact at every moment, even if the
process is killed. Where the file system cannot swap, a file is replaced by
one rename; a directory is moved aside into the staging directory, the new
one moved in, and the old one put back if that fails.

A staging directory is locked (`flock` on its `lock` file) while its export
runs. One whose lock is free was left by a killed export: the next export to
the same path removes it, after putting back an artifact it had moved aside.

File-system failures (an `OSError`, or TensorFlow's error for one, such as
`ResourceExhaustedError: ... No space left on device [Op:SaveV2]`) are raised
as `ExportWriteError`, which names the path and the cause.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import io
import os
import re
import shutil
import tarfile
import tempfile
import time

import tensorflow as tf

from tfprune._base.validation import received
from tfprune.export._result import ExportWriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale staging dirs are found by age
    fcntl = None

_LOCK = "lock"
_PREVIOUS = "previous"
_SCRATCH = "scratch-"
# A staging dir without a lock file is being created (or its export was
# killed within microseconds of starting); one without `flock` is judged by age.
_UNLOCKED_STALE_S = 60.0 if fcntl is not None else 24 * 3600.0
# Errors that mean "this directory cannot be written to", not "the write failed".
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
# Operating-system errors that TensorFlow reports inside its own exceptions.
_TF_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)
# `renameat2` flags (linux/fs.h).
_NOREPLACE = 1
_EXCHANGE = 2


def _load_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not Linux with glibc >= 2.28
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()
_AT_FDCWD = -100


def _reached(stage: str) -> None:
    """Marks a step of an export's staging and commit; a no-op.

    Stages: `"staged"` (staging dir created and locked), `"written"` (the
    artifact is complete, about to be moved), `"moved_aside"` (no atomic
    swap: the old artifact is in the staging dir and `path` is free) and
    `"committed"` (the new artifact is at `path`). Fault tests hook it.
    """


def _rename(src: str, dst: str, flags: int = 0) -> bool:
    """Renames `src` to `dst`, with `flags` as in Linux `renameat2`.

    `0` replaces a file at `dst` (`os.replace`); `_NOREPLACE` fails with
    `FileExistsError` if `dst` exists; `_EXCHANGE` swaps `src` and `dst`.
    Returns False, having done nothing, where the system or the file system
    does not support `flags`.
    """
    if not flags:
        os.replace(src, dst)
        return True
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), src, None, dst)


def _move_new(src: str, dst: str) -> None:
    """Renames `src` to `dst`; `FileExistsError` if something is at `dst`."""
    if _rename(src, dst, _NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    _rename(src, dst)


def _remove_tree(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _is_real_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _read_only(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # pragma: no cover - no statvfs
        return False


def check_destination(path, overwrite: bool) -> str:
    """Validates an export destination and returns it as an absolute path.

    Raises:
        TypeError: if `path` is not a string or path-like.
        ValueError: if its directory does not exist or cannot be written,
            or `path` exists and `overwrite` is False.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a string or a path-like object. {received('path', path)}")
    path = os.fspath(path)
    if not path or path.endswith(os.sep):
        raise ValueError(f"`path` must name a file or directory to create. {received('path', path)}")
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ValueError(
            f"`path` must be inside an existing directory; '{parent}' does not exist "
            f"or is not a directory. {received('path', path)}"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(parent) else "permission denied"
        raise ValueError(
            f"`path` is in a directory that cannot be written to ('{parent}': "
            f"{reason}). {received('path', path)}"
        )
    if os.path.lexists(path) and not overwrite:
        raise ValueError(
            "`path` already exists; pass `overwrite=True` to replace it. "
            f"{received('path', path)}"
        )
    return path


def _os_error(exc: BaseException):
    """`(errno, reason)` of the file-system failure behind `exc`, or None."""
    if isinstance(exc, OSError):
        return exc.errno, exc.strerror or str(exc)
    if isinstance(exc, tf.errors.OpError):
        for code in _TF_OS_ERRORS:
            if os.strerror(code) in exc.message:
                return code, os.strerror(code)
    return None


def _write_error(path: str, exc: BaseException, code, reason: str, state: str) -> ExportWriteError:
    if isinstance(exc, tf.errors.OpError):
        op = re.search(r"\[Op:(\w+)\]", exc.message)
        source = f"TensorFlow {type(exc).__name__}" + (f" in {op.group(1)}" if op else "")
    else:
        where = getattr(exc, "filename", None)
        source = type(exc).__name__ + (f" on '{where}'" if where else "")
    return ExportWriteError(
        f"The export to `path` could not be written: {reason} ({source}). {state} {received('path', path)}",
        code,
        reason,
        path,
    )


def _lock(directory: str):
    """Creates and locks `directory/lock`; the lock ends with the process."""
    if fcntl is None:  # pragma: no cover
        return None
    fresh = os.path.join(directory, _LOCK + ".new")
    fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Named `lock` only once held, so an unlocked `lock` means a dead owner.
        os.rename(fresh, os.path.join(directory, _LOCK))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _abandoned(directory: str, name: str):
    """Locks a staging dir of `name` whose export is dead.

    Returns the lock's file descriptor (-1 for a dir that never got its lock
    and is over `_UNLOCKED_STALE_S` old), or None if the dir is not clearly a
    tfprune staging dir of this user, or its export may still be running.
    """
    try:
        info = os.lstat(directory)
        entries = os.listdir(directory)
    except OSError:
        return None
    allowed = {name, _PREVIOUS, _LOCK, _LOCK + ".new"}
    if (
        not _is_real_dir(directory)
        or (hasattr(os, "geteuid") and info.st_uid != os.geteuid())
        or not all(e in allowed or e.startswith(_SCRATCH) for e in entries)
    ):
        return None
    if fcntl is None or _LOCK not in entries:
        return -1 if time.time() - info.st_mtime > _UNLOCKED_STALE_S else None
    try:
        fd = os.open(os.path.join(directory, _LOCK), os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a running export
        os.close(fd)
        return None
    return fd


def remove_stale(path: str) -> list:
    """Removes the staging dirs that killed exports left beside `path`.

    Only directories named `.NAME.tfprune-XXXXXXXX`, owned by this user,
    holding nothing but staging entries, and whose lock no process holds
    (or, never locked, over a minute old). An artifact that a killed
    overwrite had moved aside is put back at `path` if `path` is missing.

    Returns:
        The directories removed.
    """
    parent, name = os.path.split(path)
    pattern = re.compile(re.escape(f".{name}.tfprune-") + r"[a-z0-9_]{8}\Z")
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    removed = []
    for entry in entries:
        directory = os.path.join(parent, entry)
        fd = _abandoned(directory, name) if pattern.match(entry) else None
        if fd is None:
            continue
        try:
            previous = os.path.join(directory, _PREVIOUS)
            if os.path.lexists(previous) and not os.path.lexists(path):
                _move_new(previous, path)
            _remove_tree(directory)
            removed.append(directory)
        except OSError:  # best effort: leave it for a later export
            pass
        finally:
            if fd >= 0:
                os.close(fd)
    return removed


class Staging:
    """A staging directory beside `path`; `commit()` moves the artifact in.

    Use as a context manager. Entering first removes what killed exports to
    the same path left behind (`remove_stale`). Write the artifact at
    `self.target` (a file or a directory) and any intermediate files under
    `self.scratch(name)`; call `commit()` when it is complete. Leaving the
    block removes the staging directory, committed or not, and turns a
    file-system error into an `ExportWriteError`.
    """

    def __init__(self, path: str, overwrite: bool):
        self.path = path
        self.overwrite = overwrite
        self.dir = None
        self.target = None
        self._lock = None
        self._committed = False

    def __enter__(self) -> "Staging":
        parent, name = os.path.split(self.path)
        remove_stale(self.path)
        try:
            self.dir = tempfile.mkdtemp(prefix=f".{name}.tfprune-", dir=parent)
            try:
                self._lock = _lock(self.dir)
            except BaseException:
                _remove_tree(self.dir)
                raise
        except OSError as e:
            if e.errno in _NOT_WRITABLE:
                reason = "read-only file system" if e.errno == errno.EROFS else "permission denied"
                raise ValueError(
                    f"`path` is in a directory that cannot be written to ('{parent}': "
                    f"{reason}). {received('path', self.path)}"
                ) from e
            raise self._error(e, *_os_error(e)) from e
        self.target = os.path.join(self.dir, name)
        try:
            _reached("staged")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def scratch(self, name: str) -> str:
        """A path for an intermediate file, removed with the staging dir."""
        return os.path.join(self.dir, f"{_SCRATCH}{name}")

    def commit(self) -> None:
        """Moves the artifact to the destination (replacing it if allowed).

        Raises:
            ValueError: if `path` appeared during the export and `overwrite`
                is False (it is left alone).
            ExportWriteError: if the previous artifact was moved aside, the
                new one could not be moved in and the old one could not be
                put back; it is then kept in the staging dir (named in the
                message) and put back by the next export to `path`.
            OSError: if a move fails; `path` is unchanged.
        """
        if not os.path.lexists(self.target):
            raise RuntimeError(f"Nothing was written at {self.target}.")  # pragma: no cover
        _reached("written")
        try:
            _move_new(self.target, self.path)
        except FileExistsError:
            if not self.overwrite:  # appeared while we were exporting
                raise ValueError(
                    "`path` already exists; pass `overwrite=True` to replace it. "
                    f"{received('path', self.path)}"
                ) from None
            self._replace()
        self._committed = True
        _reached("committed")

    def _replace(self) -> None:
        if _rename(self.target, self.path, _EXCHANGE):
            return  # the old artifact is now at `self.target`, removed on exit
        if not _is_real_dir(self.target) and not _is_real_dir(self.path):
            _rename(self.target, self.path)  # a file replaces a file in one step
            return
        previous = os.path.join(self.dir, _PREVIOUS)
        try:
            _rename(self.path, previous)
            _reached("moved_aside")
            _rename(self.target, self.path)
        except BaseException as error:
            if os.path.lexists(self.path) or not os.path.lexists(previous):
                raise
            try:
                _rename(previous, self.path)
            except OSError as restore_error:
                raise ExportWriteError(
                    f"The new artifact could not be moved to `path` ({error}) and the previous "
                    f"one could not be put back ({restore_error}); it is kept at '{previous}' "
                    "and the next export to `path` puts it back. "
                    f"{received('path', self.path)}",
                    getattr(error, "errno", None),
                    getattr(error, "strerror", None),
                    self.path,
                ) from error
            raise

    def _remove(self) -> None:
        """Removes the staging dir, unless it holds the only copy of the old artifact."""
        previous = os.path.join(self.dir, _PREVIOUS)
        if os.path.lexists(previous) and not os.path.lexists(self.path):
            try:
                _move_new(previous, self.path)
            except OSError:
                return  # kept for `remove_stale` to put back
        _remove_tree(self.dir)

    def _error(self, exc: BaseException, code, reason: str) -> ExportWriteError:
        if self._committed:
            state = "The new artifact is at `path`."
        elif os.path.lexists(self.path):
            state = "`path` was left as it was."
        else:
            state = "Nothing was written at `path`."
        return _write_error(self.path, exc, code, reason, state)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.dir is not None:
                self._remove()
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None
        cause = None if exc is None or isinstance(exc, ExportWriteError) else _os_error(exc)
        if cause is not None:
            raise self._error(exc, *cause) from exc
        return None


def disk_bytes(path: str) -> int:
    """Size of a file, or the total size of the files under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
    )


def gzip_bytes(path: str) -> tuple[int, str]:
    """Compressed size of a file or directory, and how it was measured.

    A file is gzipped at level 9; a directory is archived with tar (sorted
    entries, no timestamps or owners) and the archive gzipped at level 9.
    """
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return len(gzip.compress(f.read(), compresslevel=9, mtime=0)), "gzip -9 of the file"
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    full = os.path.join(root, f)
                    info = tar.gettarinfo(full, arcname=os.path.relpath(full, path))
                    info.mtime = info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(full, "rb") as data:
                        tar.addfile(info, data)
    return len(buffer.getvalue()), "tar + gzip -9 of the directory"
