"""Places where writing fails: a tiny tmpfs and a directory that cannot be written.

The tmpfs needs `mount`, so root; a test that cannot mount is skipped with the
reason. The unwritable directory works for everyone (see `unwritable_dir`).
Whatever is mounted is unmounted when the block ends.
"""

import contextlib
import errno
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

    Never skips. Not root: a directory with mode 0o500 ("permission denied").
    Root ignores permission bits, so for root it is a tmpfs mounted
    read-only ("read-only file system"). Where root may not mount (a
    container without CAP_SYS_ADMIN, as in CI), the directory gets mode
    0o500 and, while the block runs, `os.access`, `os.mkdir` and `os.open`
    answer for it as the kernel does for a user who is not root: no write
    access, and `PermissionError` for a new entry ("permission denied").
    Nothing is left mounted or patched when the block ends; the directory
    itself stays, empty.
    """
    if not _is_root():
        path.mkdir(mode=0o500)
        try:
            yield path, "permission denied"
        finally:
            path.chmod(0o700)
        return
    path.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "ro,size=16k,mode=0755", "tmpfs", str(path))
    except (OSError, subprocess.SubprocessError):
        path.chmod(0o500)
        try:
            with _denied_as_for_a_user(path):
                yield path, "permission denied"
        finally:
            path.chmod(0o700)
        return
    try:
        yield path, "read-only file system"
    finally:
        _umount(path)


@contextlib.contextmanager
def _denied_as_for_a_user(directory):
    """Makes `os.access`, `os.mkdir` and `os.open` treat `directory` as not
    writable, as the kernel does for a user without write permission."""
    directory = os.path.abspath(directory)
    access, mkdir, open_ = os.access, os.mkdir, os.open

    def inside(target, dir_fd=None):
        return dir_fd is None and os.path.dirname(os.path.abspath(target)) == directory

    def denied(target):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(target))

    def checked_access(target, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(target) == directory:
            return False
        return access(target, mode, *args, **kwargs)

    def checked_mkdir(target, *args, dir_fd=None, **kwargs):
        if inside(target, dir_fd):
            raise denied(target)
        return mkdir(target, *args, dir_fd=dir_fd, **kwargs)

    def checked_open(target, flags, *args, dir_fd=None, **kwargs):
        if flags & os.O_CREAT and inside(target, dir_fd):
            raise denied(target)
        return open_(target, flags, *args, dir_fd=dir_fd, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "access", checked_access)
        patch.setattr(os, "mkdir", checked_mkdir)
        patch.setattr(os, "open", checked_open)
        yield
