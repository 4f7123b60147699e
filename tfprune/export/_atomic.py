"""Atomic writes: build an artifact next to its destination, then move it.

Every export writes into a private staging directory created beside the
destination (same file system, so the final move is a rename). The artifact
is moved into place only once it is complete and verified; on any failure
the staging directory is removed and the destination is left as it was.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile

from tfprune._validation import received


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
        raise ValueError(
            f"`path` is in a directory that cannot be written to ('{parent}': "
            f"permission denied). {received('path', path)}"
        )
    if os.path.lexists(path) and not overwrite:
        raise ValueError(
            "`path` already exists; pass `overwrite=True` to replace it. "
            f"{received('path', path)}"
        )
    return path


class Staging:
    """A staging directory beside `path`; `commit()` moves the artifact in.

    Use as a context manager. Write the artifact at `self.target` (a file or
    a directory) and any intermediate files under `self.scratch(name)`;
    call `commit()` when it is complete. Leaving the block removes the
    staging directory, committed or not.
    """

    def __init__(self, path: str, overwrite: bool):
        self.path = path
        self.overwrite = overwrite
        self.dir = None
        self.target = None

    def __enter__(self) -> "Staging":
        parent, name = os.path.split(self.path)
        try:
            self.dir = tempfile.mkdtemp(prefix=f".{name}.tfprune-", dir=parent)
        except OSError as e:
            raise ValueError(
                f"`path` is in a directory that cannot be written to ('{parent}': "
                f"{e.strerror or e}). {received('path', self.path)}"
            ) from e
        self.target = os.path.join(self.dir, name)
        return self

    def scratch(self, name: str) -> str:
        """A path for an intermediate file, removed with the staging dir."""
        return os.path.join(self.dir, f"scratch-{name}")

    def commit(self) -> None:
        """Moves the artifact to the destination (replacing it if allowed)."""
        if not os.path.lexists(self.target):
            raise RuntimeError(f"Nothing was written at {self.target}.")  # pragma: no cover
        if not os.path.lexists(self.path):
            os.replace(self.target, self.path)
            return
        if not self.overwrite:  # appeared while we were exporting
            raise ValueError(
                "`path` already exists; pass `overwrite=True` to replace it. "
                f"{received('path', self.path)}"
            )
        old = os.path.join(self.dir, "previous")
        os.replace(self.path, old)
        try:
            os.replace(self.target, self.path)
        except OSError:
            os.replace(old, self.path)
            raise

    def __exit__(self, *exc) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
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
