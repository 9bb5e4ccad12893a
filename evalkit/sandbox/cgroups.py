"""Limits on a whole program (all its processes together): a control group per program, with
total memory and process count. cgroup v2 (`memory.max`, `pids.max`) where this process's
cgroup can have children with those controllers; else cgroup v1's memory and pids hierarchies
(`memory.limit_in_bytes`, `pids.max`); else none, and the executor divides the memory budget
between the processes it allows (said in the manifest).

A program enters its group before it starts: a shell writes its own pid to the group's
`cgroup.procs` and execs the sandbox, so every process after it is inside. Groups are named
`evalkit-<block>-<n>` after the evaluator's lease (`leases.py`), so a dead evaluator's groups
are found and removed at the next start-up.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["v2", "v1", "none"]
_NAME = re.compile(r"evalkit-(\d+)-\d+$")
# Enter the groups, then become the sandbox.
_ENTER = 'for f in "$1" "$2"; do echo $$ > "$f" || exit 125; done; shift 2; exec "$@"'


@dataclass(frozen=True)
class Support:
    kind: Kind
    memory_parent: Path | None = None  # where per-program groups are made
    pids_parent: Path | None = None  # the same directory in v2
    reason: str = ""  # why not, for kind "none"

    def describe(self) -> str:
        if self.kind == "v2":
            return "cgroup v2 per program (memory.max, pids.max over all its processes)"
        if self.kind == "v1":
            return "cgroup v1 per program (memory.limit_in_bytes, pids.max over all its processes)"
        return f"no cgroup ({self.reason}): memory divided between the processes allowed"


NOT_PROBED = Support("none", reason="not probed")


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root of the hierarchy it shows, fs type, super options) of every cgroup
    mount."""
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) > 4 and len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
                out.append((fields[4], fields[3], rfields[0], set(rfields[2].split(","))))
    return out


def _directory(mount: str, root: str, own: str) -> Path | None:
    """Where this process's cgroup `own` appears under a mount showing `root` of the hierarchy
    (a container often mounts its own cgroup as the root)."""
    if root != "/" and not (own == root or own.startswith(root.rstrip("/") + "/")):
        return None
    rel = own[len(root) :] if root != "/" else own
    path = Path(mount) / rel.strip("/")
    return path if path.is_dir() else None


def _own_paths() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                for c in parts[1].split(",") if parts[1] else [""]:
                    out[c] = parts[2]
    return out


def _writable_group(parent: Path, files: dict[str, str]) -> bool:
    probe = parent / f"evalkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        for name, value in files.items():
            (probe / name).write_text(value)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _leave_for_a_leaf(here: Path) -> None:
    """v2 lets a non-root cgroup with processes have no controllers for its children. When the
    evaluator is alone in its cgroup (a container running evalkit, say), it moves into a leaf
    child `evalkit-evaluator` so per-program siblings can get memory and pids controllers."""
    procs = (here / "cgroup.procs").read_text().split()
    if procs != [str(os.getpid())]:
        return  # not alone: leave the cgroup as it is (the caller falls back)
    leaf = here / "evalkit-evaluator"
    leaf.mkdir(exist_ok=True)
    (leaf / "cgroup.procs").write_text(str(os.getpid()))


def _v2() -> Support | None:
    own = _own_paths().get("")
    for mount, root, fstype, _ in _mounts():
        here = _directory(mount, root, own) if fstype == "cgroup2" and own is not None else None
        if here is None:
            continue
        try:
            controllers = (here / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if not {"memory", "pids"} <= set(controllers):
            continue
        try:
            enabled = set((here / "cgroup.subtree_control").read_text().split())
            if not {"memory", "pids"} <= enabled:
                _leave_for_a_leaf(here)
                (here / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:
            continue  # e.g. other processes share our cgroup (no internal processes in v2)
        if _writable_group(here, {"memory.max": str(64 << 20), "pids.max": "8"}):
            return Support("v2", here, here)
    return None


def _v1() -> Support | None:
    own = _own_paths()
    found: dict[str, Path] = {}
    for mount, root, fstype, opts in _mounts():
        for c in ("memory", "pids"):
            if fstype == "cgroup" and c in opts and c in own:
                d = _directory(mount, root, own[c])
                if d is not None:
                    found[c] = d
    mem, pids = found.get("memory"), found.get("pids")
    if mem is None or pids is None:
        return None
    if not _writable_group(mem, {"memory.limit_in_bytes": str(64 << 20)}):
        return None
    if not _writable_group(pids, {"pids.max": "8"}):
        return None
    return Support("v1", mem, pids)


@functools.lru_cache(maxsize=1)
def detect() -> Support:
    if os.geteuid() != 0:
        return Support("none", reason="not root: cgroups are not delegated to this user")
    found = _v2() or _v1()
    if found is None:
        return Support("none", reason="no writable cgroup v2 or v1 memory and pids controllers")
    return found


class Group:
    """One program's control group(s): create, enter (through `wrap`), read, kill, remove."""

    def __init__(self, support: Support, name: str, memory_bytes: int, processes: int) -> None:
        assert support.memory_parent is not None and support.pids_parent is not None
        self.support = support
        self.memory = support.memory_parent / name
        self.pids = support.pids_parent / name
        for d in {self.memory, self.pids}:
            if d.exists():  # a dead evaluator's, with our block
                _kill_and_remove([d])
            d.mkdir()
        if support.kind == "v2":
            self.memory.joinpath("memory.max").write_text(str(memory_bytes))
            for name_, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                with contextlib.suppress(OSError):
                    self.memory.joinpath(name_).write_text(value)
        else:
            self.memory.joinpath("memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):  # no swap either, where accounted
                self.memory.joinpath("memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        self.pids.joinpath("pids.max").write_text(str(processes))

    def wrap(self, command: list[str]) -> list[str]:
        procs = [str(self.memory / "cgroup.procs"), str(self.pids / "cgroup.procs")]
        return ["/bin/sh", "-c", _ENTER, "sh", *procs, *command]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for the memory limit."""
        name = "memory.events" if self.support.kind == "v2" else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in self.memory.joinpath(name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        if self.support.kind == "v1":  # older kernels: the limit was hit at all
            with contextlib.suppress(OSError, ValueError):
                return int(self.memory.joinpath("memory.failcnt").read_text()) > 0
        return False

    def close(self) -> None:
        """Kill everything in the group and remove it."""
        _kill_and_remove([self.memory, self.pids])


def _procs(group: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(x) for x in group.joinpath("cgroup.procs").read_text().split()]
    return []


def _kill_and_remove(groups: list[Path], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    for g in dict.fromkeys(groups):
        if not g.exists():
            continue
        with contextlib.suppress(OSError):
            g.joinpath("cgroup.kill").write_text("1")  # v2: the kernel kills them all
        while time.monotonic() < deadline:
            pids = _procs(g)
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            try:
                g.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)  # dying processes leave the group a moment later


def sweep(support: Support, is_free: Callable[[int], bool]) -> int:
    """Kill and remove the groups of evaluators that are gone; how many."""
    stale: list[Path] = []
    for parent in {support.memory_parent, support.pids_parent}:
        if parent is None:
            continue
        with contextlib.suppress(OSError):
            for entry in os.scandir(parent):
                m = _NAME.match(entry.name)
                if m and is_free(int(m.group(1))):
                    stale.append(Path(entry.path))
    _kill_and_remove(stale)
    return len(stale)
