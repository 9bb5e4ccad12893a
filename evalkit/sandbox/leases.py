"""What one evaluator process owns on this host, so that evaluators never share it: a block of
sandbox uids and a scratch root, both named by a block number held with a lock file.

The lock is an `flock` on `/tmp/evalkit-leases/block-N.lock`, taken for the life of the process
and released by the kernel when it dies (even by SIGKILL), so a block is never in two live
evaluators and a dead one's block is free again. A stale scratch root (or cgroup) is recognised
by its block's lock being free, and swept when an evaluator starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError

LEASE_DIR = Path("/tmp/evalkit-leases")  # fixed, not $TMPDIR: every evaluator must see it
# uids no account uses, and above the 1,000,000 + 64 * (pid % 100,000) blocks of older evalkits
UID_FLOOR = 1_000_000_000
BLOCK_UIDS = 256  # uids per block: one per worker slot, the last one for the bwrap probe
BLOCKS = 4096
SCRATCH_PREFIX = "evalkit-sandbox-"
_SCRATCH_NAME = re.compile(rf"{SCRATCH_PREFIX}(\d+)$")


@dataclass(frozen=True)
class Lease:
    block: int
    fd: int  # the open, flock-ed lock file; closing it would release the block

    @property
    def uid_base(self) -> int:
        return UID_FLOOR + self.block * BLOCK_UIDS

    @property
    def scratch_root(self) -> Path:
        return Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{self.block}"


_lock = threading.Lock()
_lease: Lease | None = None
_lease_pid: int | None = None


def _lock_dir() -> Path:
    LEASE_DIR.mkdir(mode=0o755, exist_ok=True)
    with contextlib.suppress(OSError):  # shared by all users, like /tmp
        os.chmod(LEASE_DIR, 0o1777)
    return LEASE_DIR


def _try_lock(block: int) -> int | None:
    path = _lock_dir() / f"block-{block}.lock"
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def is_free(block: int) -> bool:
    """Whether no live evaluator holds `block` (ours counts as held)."""
    if _lease is not None and _lease.block == block and _lease_pid == os.getpid():
        return False
    fd = _try_lock(block)
    if fd is None:
        return False
    os.close(fd)  # closing our own open file description drops the lock again
    return True


def lease() -> Lease:
    """This process's block, taken on first use (a forked child takes its own)."""
    global _lease, _lease_pid
    with _lock:
        if _lease is not None and _lease_pid == os.getpid():
            return _lease
        start = os.getpid() % BLOCKS  # spread the search; the lock decides
        for i in range(BLOCKS):
            block = (start + i) % BLOCKS
            fd = _try_lock(block)
            if fd is not None:
                _lease, _lease_pid = Lease(block, fd), os.getpid()
                return _lease
    raise EvalkitError(f"no free sandbox uid block in {LEASE_DIR} ({BLOCKS} evaluators running?)")


def stale_scratch_roots(tmp: Path | None = None) -> list[Path]:
    """Scratch roots in the temporary directory whose evaluator is gone."""
    base = tmp or Path(tempfile.gettempdir())
    out = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            m = _SCRATCH_NAME.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and is_free(int(m.group(1))):
                out.append(Path(entry.path))
    return out
