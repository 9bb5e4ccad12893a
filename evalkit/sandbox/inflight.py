"""The programs in flight in this evaluator process, so that nothing they leave outlives them:
each program's directory is registered while it runs (`start_up` / `finish`); the first start-up
in a process takes a lease and sweeps what dead evaluators left (scratch roots and cgroups); and
while programs run, SIGTERM to the evaluator first kills them all and removes their scratch
(`cleanup_on_sigterm`). executor.py runs the programs themselves.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from evalkit.sandbox import cgroups
from evalkit.sandbox.cleanup import remove_tree
from evalkit.sandbox.leases import is_free, lease, stale_scratch_roots


@dataclass
class Running:
    """A program in flight, for the SIGTERM handler: what to kill and what to remove."""

    home: Path
    pid: int | None = None
    group: cgroups.Group | None = None
    uid: int | None = None


_registry_lock = threading.Lock()
_running: dict[int, Running] = {}  # by id()
_numbers = itertools.count()
_swept_pid: int | None = None


def start_up(entry: Running) -> None:
    """Register a program and make its directory. The first time in an evaluator process: take
    a lease, and sweep what dead evaluators left behind (scratch roots and cgroups)."""
    global _swept_pid
    own = lease()
    with _registry_lock:
        if _swept_pid != os.getpid():
            for stale in [*stale_scratch_roots(), own.scratch_root]:
                if stale.exists():
                    remove_tree(stale)
            support = cgroups.detect()
            if support.kind != "none":
                # Our own block's groups, too: left by an evaluator that held it and died.
                cgroups.sweep(support, lambda b: b == own.block or is_free(b))
            _swept_pid = os.getpid()
        own.scratch_root.mkdir(mode=0o711, exist_ok=True)
        os.chmod(own.scratch_root, 0o711)  # traversable by a dropped uid (rlimits mode)
        entry.home.mkdir(mode=0o711)
        _running[id(entry)] = entry


def finish(entry: Running) -> None:
    """Remove a program's directory, and the scratch root once nothing runs."""
    with _registry_lock:
        _running.pop(id(entry), None)
        remove_tree(entry.home)
        if not _running:
            with contextlib.suppress(OSError):
                remove_tree(lease().scratch_root)


def abort_all() -> None:
    """Kill every program in flight and remove every trace of them (SIGTERM)."""
    with _registry_lock:
        running = list(_running.values())
        _running.clear()
    for r in running:
        if r.pid is not None:
            killpg(r.pid)
        if r.group is not None:
            r.group.close()
    for r in running:
        with contextlib.suppress(OSError):
            remove_tree(r.home)
    with contextlib.suppress(OSError):
        remove_tree(lease().scratch_root)


@contextlib.contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """While programs run: SIGTERM to the evaluator first kills them and removes their scratch,
    then takes its usual course. Only the main thread can set a handler; elsewhere the sweep
    at the next start-up removes what is left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        abort_all()
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def next_number() -> int:
    """A number unique in this process, naming a program's directory and cgroup."""
    return next(_numbers)


def killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
