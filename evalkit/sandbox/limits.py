"""Resource limits of one sandboxed program."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one program may use. Every field is enforced by the kernel (rlimits) or by the
    harness (wall clock), never by the program's own cooperation."""

    wall_seconds: float = 10.0  # harness kills the whole process tree after this
    cpu_seconds: int = 5  # RLIMIT_CPU per process: SIGXCPU, then SIGKILL one second later
    # All of a program's processes together (cgroup), and RLIMIT_AS per process; without a
    # cgroup the budget is divided between the processes allowed (isolation.divided).
    memory_bytes: int = 1024 * MiB
    file_bytes: int = 16 * MiB  # RLIMIT_FSIZE: also caps what stdout/stderr can hold
    processes: int = 16  # RLIMIT_NPROC for the program's own user, and the cgroup's pids.max
    open_files: int = 64  # RLIMIT_NOFILE
    tmp_bytes: int = 16 * MiB  # size of the private /tmp (bubblewrap only)
    scratch_bytes: int = 64 * MiB  # size of the working directory's tmpfs (bubblewrap only)

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0 or self.cpu_seconds < 1:
            raise ValueError("sandbox time limits must be positive (cpu_seconds >= 1)")
        if min(self.memory_bytes, self.file_bytes, self.tmp_bytes, self.scratch_bytes) < MiB:
            raise ValueError("sandbox memory and file limits must be at least 1 MiB")
        if self.processes < 2 or self.open_files < 8:
            raise ValueError("sandbox needs processes >= 2 and open_files >= 8")

    def describe(self) -> dict[str, float | int]:
        return asdict(self)
