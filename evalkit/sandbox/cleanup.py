"""Remove a directory tree a sandboxed program had write access to, without ever following a
symlink: every directory is opened with O_NOFOLLOW and handled through its descriptor, and only
directories opened that way are ever chmod-ed (the program may have made them unreadable)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_REOPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # a /proc fd link: the object itself
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: Path) -> None:
    """Remove `path` (a directory, or a file or symlink, which is unlinked, never followed)."""
    parent = os.open(path.parent, _DIR_FLAGS)
    try:
        _remove_entry(parent, path.name)
    finally:
        os.close(parent)


def _remove_entry(parent_fd: int, name: str, depth: int = 0) -> None:
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(OSError):  # what cannot be removed is left, never followed
            os.unlink(name, dir_fd=parent_fd)
        return
    if depth > 512:  # deeper than any program makes on purpose: leave it, don't recurse forever
        return
    try:
        # O_PATH opens even a directory the program chmod-ed to 000, and never a symlink.
        handle = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
    except OSError:
        # Replaced by a symlink or file since the lstat: unlink what is there now.
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=parent_fd)
        return
    try:
        # chmod through the descriptor's own /proc link: the directory itself, nothing else.
        with contextlib.suppress(OSError):
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        try:
            fd = os.open(f"/proc/self/fd/{handle}", _REOPEN_FLAGS)
        except OSError:
            return  # not ours to remove
    finally:
        os.close(handle)
    try:
        with contextlib.suppress(OSError):
            for child in os.listdir(fd):
                _remove_entry(fd, child, depth + 1)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=parent_fd)
