"""Places where writing fails for real: a tiny tmpfs and a read-only directory.

Both need `mount`, so root (as in CI); a test that cannot mount is skipped
with the reason. Whatever is mounted is unmounted when the block ends.
"""

import contextlib
import os
import subprocess

import pytest


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _mount(*args) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise OSError(f"`mount {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")


def _umount(path) -> None:
    proc = subprocess.run(["umount", str(path)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:  # busy: detach it now, the kernel frees it when idle
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=True)


@contextlib.contextmanager
def tmpfs(path, size: str):
    """Mounts a tmpfs of `size` (e.g. "512k") at the new directory `path`."""
    if not _is_root():
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def unwritable_dir(path):
    """Yields `(path, reason)`: a new empty directory that cannot be written.

    Root ignores permission bits, so for root it is a read-only bind mount of
    an empty directory (reason "read-only file system"); otherwise a
    directory with mode 0o500 (reason "permission denied").
    """
    if not _is_root():
        path.mkdir(mode=0o500)
        try:
            yield path, "permission denied"
        finally:
            path.chmod(0o700)
        return
    source = path.with_name(path.name + "-source")
    source.mkdir()
    path.mkdir()
    try:
        _mount("--bind", str(source), str(path))
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot make a read-only directory as root: {e}")
    try:
        _mount("-o", "remount,ro,bind", str(path))
    except (OSError, subprocess.SubprocessError) as e:
        _umount(path)
        pytest.skip(f"cannot make a read-only directory as root: {e}")
    try:
        yield path, "read-only file system"
    finally:
        _umount(path)
