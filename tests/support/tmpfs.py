"""A small real file system for disk-full tests: a tmpfs of a given size mounted on a directory (root only),
filled up with a filler file, grown with a remount, unmounted by the context manager whatever happens. It only
ever mounts on, and unmounts, the directory it was given."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CMD_TIMEOUT_S = 10.0


def unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here (not root, no mount(8)), or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if subprocess.run(["which", "mount"], capture_output=True).returncode != 0:
        return "no mount(8)"
    return None


def _run(*cmd: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


@contextmanager
def tmpfs(directory: Path, size_bytes: int) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory))
    try:
        yield directory
    finally:
        try:
            _run("umount", str(directory))
        except RuntimeError:
            _run("umount", "-l", str(directory))  # still busy (a process we started is dying): detach it


def grow(directory: Path, size_bytes: int) -> None:
    _run("mount", "-o", f"remount,size={size_bytes}", str(directory))


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_bytes: int = 0) -> int:
    """Append to `path` until fewer than leave_bytes + 4 KiB are free on its file system (with 0: until the
    disk is full). -> bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            block = bytes(chunk)
            while free_bytes(path.parent) - chunk >= leave_bytes:
                try:
                    written += os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written
