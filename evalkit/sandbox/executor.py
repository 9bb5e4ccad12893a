"""Run untrusted Python programs: one process tree per program, in parallel up to the cores.

Each program gets a fresh scratch directory (under bubblewrap a size-capped tmpfs; removed
afterwards, never following a symlink), an environment with nothing of the evaluator's, a
control group capping the memory and processes of all its processes together (or, without
one, the budget divided per process), kernel limits on CPU, memory, file size, open files and
processes, a wall-clock limit enforced from outside, and its stdout/stderr written to files the
harness opened (so output is capped by the file-size limit, never buffered whole in the
evaluator). It passes only if it exits 0 *and* hands back the runner's nonce (runner.py). When
it ends, times out or not, everything it started is killed: its process group, its cgroup, its
pid namespace (bubblewrap) and, when it ran as its own uid, every process of that uid. SIGTERM
to the evaluator does the same before it dies, and a dead evaluator's leftovers are swept by
the next one (inflight.py, leases.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from evalkit.errors import EvalkitError
from evalkit.sandbox import cgroups
from evalkit.sandbox.inflight import (
    Running,
    cleanup_on_sigterm,
    finish,
    killpg,
    next_number,
    start_up,
)
from evalkit.sandbox.isolation import (
    LAUNCHER,
    SANDBOX_DIR,
    Isolation,
    bwrap_args,
    clean_env,
    divided,
    uid_base,
)
from evalkit.sandbox.leases import BLOCK_UIDS, lease
from evalkit.sandbox.limits import Limits
from evalkit.sandbox.runner import RUNNER, Handoff, handoff

# `incomplete`: it exited 0 without the runner's nonce, so its tests did not run to the end.
Status = Literal[
    "passed", "failed", "incomplete", "timeout", "cpu_limit", "file_limit", "memory_limit", "killed"
]
TAIL_BYTES = 4096
_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class Outcome:
    status: Status
    returncode: int | None  # None when the harness killed it on the wall clock
    seconds: float
    stdout: str  # the last TAIL_BYTES of each stream
    stderr: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class TestedProgram(Protocol):
    """A model's solution and the tests that decide it (evalkit.tasks.executed.TestedProgram)."""

    @property
    def solution(self) -> str: ...  # the model's code: runs in a process of its own
    @property
    def setup(self) -> str: ...  # the problem's own helpers, for the tests
    @property
    def test(self) -> str: ...  # defines check(candidate)
    @property
    def entry_point(self) -> str: ...


Program = str | TestedProgram


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _user_processes(uid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                n += os.stat(f"/proc/{entry}").st_uid == uid
    return n


class Sandbox:
    def __init__(
        self, isolation: Isolation, limits: Limits | None = None, workers: int | None = None
    ) -> None:
        self.isolation = isolation
        self.limits = limits or Limits()
        # A slot is a uid of the evaluator's block; the block's last uid is the probe's.
        n = workers if workers is not None else available_cores()
        self.workers = max(1, min(n, BLOCK_UIDS - 1))

    def run(
        self, programs: Sequence[Program], on_done: Callable[[int], None] | None = None
    ) -> list[Outcome]:
        """Outcomes in the order of `programs`; `on_done(1)` after each (progress bars)."""
        if not programs:
            return []
        slots: queue.Queue[int] = queue.Queue()
        for s in range(min(self.workers, len(programs))):
            slots.put(s)

        def one(program: Program) -> Outcome:
            slot = slots.get()
            try:
                return self.run_one(program, slot)
            finally:
                slots.put(slot)
                if on_done is not None:
                    on_done(1)

        with (
            cleanup_on_sigterm(),
            ThreadPoolExecutor(max_workers=min(self.workers, len(programs))) as pool,
        ):
            return list(pool.map(one, programs))

    def _rlimits(self, uid: int | None) -> list[tuple[str, int, int]]:
        lim = self.limits
        procs, memory = lim.processes, lim.memory_bytes
        if self.isolation.cgroup.kind == "none":
            memory, procs = divided(lim)  # no whole-program accounting: divide the budget
        if uid is None and os.geteuid() != 0:
            # RLIMIT_NPROC counts every process of the user: leave room for those already there.
            procs += _user_processes(os.geteuid())
        return [
            ("RLIMIT_CPU", lim.cpu_seconds, lim.cpu_seconds + 1),
            ("RLIMIT_AS", memory, memory),
            ("RLIMIT_FSIZE", lim.file_bytes, lim.file_bytes),
            ("RLIMIT_NPROC", procs, procs),
            ("RLIMIT_NOFILE", lim.open_files, lim.open_files),
            ("RLIMIT_CORE", 0, 0),
        ]

    def _command(
        self, scratch: Path, uid: int | None, fds: tuple[int, int], entry: str
    ) -> list[str]:
        iso = self.isolation
        python = iso.interpreter
        inside = SANDBOX_DIR if iso.kind == "bwrap" else str(scratch)
        runner = [python, "-I", "-S", "-B", "-c", RUNNER, str(fds[0]), str(fds[1])]
        spec = {
            "uid": uid,
            "rlimits": self._rlimits(uid),
            "argv": [*runner, f"{inside}/program.py", entry],
        }
        launcher = [python, "-I", "-S", "-c", LAUNCHER, json.dumps(spec)]
        if iso.kind == "bwrap":
            assert iso.bwrap is not None
            return [*bwrap_args(iso.bwrap, python, scratch, self.limits), *launcher]
        return launcher

    def _group(self, number: int) -> cgroups.Group | None:
        support = self.isolation.cgroup
        if support.kind == "none":
            return None
        # bubblewrap's own two processes and the shell that enters the group count too.
        try:
            return cgroups.Group(
                support,
                f"evalkit-{lease().block}-{number}",
                self.limits.memory_bytes,
                self.limits.processes + 3,
            )
        except OSError as exc:
            # Worked at start-up (detect), not now: never run without the stated limits.
            raise EvalkitError(
                f"sandbox: cannot make the program's {support.kind} cgroup: {exc}"
            ) from None

    def run_one(self, program: Program, slot: int = 0) -> Outcome:
        if isinstance(program, str):
            source, hand = program, handoff()
        else:
            source = program.solution
            hand = handoff(program.setup, program.test, program.entry_point)
        uid = uid_base() + slot if self.isolation.drops_user else None
        number = next_number()
        entry = Running(home=lease().scratch_root / str(number), uid=uid)
        start_up(entry)
        try:
            return self._execute(source, hand, entry.home, uid, number, entry)
        finally:
            finish(entry)

    def _execute(
        self, source: str, hand: Handoff, home: Path, uid: int | None, number: int, entry: Running
    ) -> Outcome:
        scratch, logs = home / "work", home / "io"
        scratch.mkdir(mode=0o711)
        logs.mkdir(mode=0o700)
        (scratch / "program.py").write_text(source, encoding="utf-8")
        if uid is not None:
            os.chown(scratch, uid, uid)
        inner_home = SANDBOX_DIR if self.isolation.kind == "bwrap" else str(scratch)
        group = entry.group = self._group(number)
        try:
            secret_fd, verdict_fd = _handoff_fds(logs, hand)
            command = self._command(scratch, uid, (secret_fd, verdict_fd), hand.entry)
            if group is not None:
                command = group.wrap(command)
            try:
                with open(logs / "out", "wb") as out, open(logs / "err", "wb") as err:
                    start = time.monotonic()
                    proc = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        cwd=scratch,
                        env=clean_env(inner_home),
                        start_new_session=True,
                        close_fds=True,
                        pass_fds=(secret_fd, verdict_fd),
                    )
                    entry.pid = proc.pid
            finally:
                os.close(secret_fd)
                os.close(verdict_fd)
            timed_out = not _wait_unreaped(proc.pid, start + self.limits.wall_seconds)
            # Kill the group before reaping its leader, so the group id cannot be reused.
            killpg(proc.pid)
            rc = proc.wait()
            seconds = time.monotonic() - start
            oom = group is not None and group.oom_killed()
        finally:
            if group is not None:
                group.close()
        if uid is not None:
            _kill_uid(self.isolation.interpreter, uid)
        ran_to_end = (logs / "verdict").read_bytes() == hand.nonce.encode()
        status = _status(rc, timed_out, ran_to_end)
        if oom and status in ("failed", "killed"):
            status = "memory_limit"
        return Outcome(
            status=status,
            returncode=None if timed_out else rc,
            seconds=seconds,
            stdout=_tail(logs / "out"),
            stderr=_tail(logs / "err"),
        )


def _wait_unreaped(pid: int, deadline: float) -> bool:
    """Wait until `pid` exits (True) or the deadline passes (False), leaving it unreaped."""
    delay = 0.001
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _POLL_SECONDS)


def _kill_uid(python: str, uid: int) -> None:
    """Kill every process of `uid` (escapees that left the process group), as that uid. The
    helper drops to the uid itself: the interpreter may not be reachable by that uid."""
    code = (
        "import os, signal\n"
        f"os.setgroups([]); os.setgid({uid}); os.setuid({uid})\n"
        "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
    )
    subprocess.run(
        [python, "-I", "-S", "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={},
        cwd="/",
        timeout=30,
        check=False,
    )


def _handoff_fds(logs: Path, hand: Handoff) -> tuple[int, int]:
    """The runner's two descriptors: the nonce (and tests) to read, unlinked so only the
    descriptor leads to it; the verdict file to write, read back by the harness alone."""
    secret = logs / "secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as f:
        f.write(hand.payload)
    secret_fd = os.open(secret, os.O_RDONLY)
    secret.unlink()
    verdict_fd = os.open(logs / "verdict", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return secret_fd, verdict_fd


def _status(rc: int, timed_out: bool, ran_to_end: bool = False) -> Status:
    if timed_out:
        return "timeout"
    if rc == 0:
        return "passed" if ran_to_end else "incomplete"
    # A signal shows as -N from a direct child, as 128+N through bubblewrap.
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0
    if sig == signal.SIGXCPU:
        return "cpu_limit"
    if sig == signal.SIGXFSZ:
        return "file_limit"
    if sig:
        return "killed"
    return "failed"


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")
