"""Hostile programs in evalkit's sandbox, one test per attack.

Each attack program exits 0 only if the attack worked, so "contained" reads: the harness
returns, the item fails, nothing outside the scratch directory changed, no process of the
program is left, and it ended within its limits. All attacks run once, in parallel, under
bubblewrap (a module fixture); bubblewrap is part of the set-up (`make install`), so on Linux
its absence is a failure, not a skip.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
from evalkit.sandbox import Limits, Outcome, Sandbox, choose
from evalkit.sandbox.isolation import uid_base
from evalkit.sandbox.leases import BLOCK_UIDS

LIMITS = Limits(
    wall_seconds=4.0, cpu_seconds=2, memory_bytes=256 * 2**20, file_bytes=2**20, processes=16
)
SLACK = 3.0  # killing, reaping and removing the scratch directory, on a loaded machine
SECRET = "evalkit-test-secret-5f3c1d"


def bwrap_isolation():  # type: ignore[no-untyped-def]
    if sys.platform != "linux":
        pytest.skip("bubblewrap needs Linux")
    try:
        return choose("strict")
    except EvalkitError as exc:
        pytest.fail(f"bubblewrap must be installed and working on Linux CI: {exc}")


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def attacks(watched: Path, port: int, parent: int) -> dict[str, str]:
    w = str(watched)
    return {
        "fork_bomb": (
            "import os\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        pass\n"
        ),
        "memory_bomb": ("hog = []\nwhile True:\n    hog.append(bytearray(64 * 2**20))\n"),
        "infinite_loop": "while True:\n    pass\n",
        "ignores_sigterm": (
            "import os, signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "if os.fork() == 0:\n"
            "    os.setsid()  # a child that leaves the process group\n"
            "while True:\n"
            "    time.sleep(0.05)\n"
        ),
        "huge_stdout": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"),
        "write_outside": (
            "import os\n"
            "done = 0\n"
            f"for path in [{w + '/pwned.txt'!r}, '/usr/pwned.txt', {str(watched.parent) + '/pwned.txt'!r},\n"
            "             os.path.expanduser('~root/pwned.txt'), '/../../pwned.txt']:\n"
            "    try:\n"
            "        with open(path, 'w') as f:\n"
            "            f.write('pwned')\n"
            "        done += os.path.exists(path) and not path.startswith('/sandbox')\n"
            "    except OSError:\n"
            "        pass\n"
            "assert done, 'no write outside the scratch directory'\n"
        ),
        "delete_outside": (
            f"import os, shutil\nos.remove({w + '/sentinel.txt'!r})\nshutil.rmtree({w!r})\n"
        ),
        # The program knows only the secret's hash, so its own source cannot leak it.
        "read_parent_secret": (
            "import hashlib, os\n"
            "seen = list(os.environ.values())\n"
            f"for pid in [{parent}, os.getppid(), 1] + [p for p in os.listdir('/proc') if p.isdigit()]:\n"
            "    try:\n"
            "        raw = open(f'/proc/{pid}/environ', 'rb').read().decode('latin-1')\n"
            "        seen += [kv.partition('=')[2] for kv in raw.split('\\0')]\n"
            "    except OSError:\n"
            "        pass\n"
            f"found = [v for v in seen if hashlib.sha256(v.encode()).hexdigest() == {_sha(SECRET)!r}]\n"
            "assert found, 'no secret found'\n"
            "print(found[0])\n"
        ),
        "connect_loopback": (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'pwned')\n"
        ),
        "kill_parent": (
            "import os, signal\n"
            "errors = 0\n"
            f"for pid in [{parent}, os.getppid()]:\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError:\n"
            "        errors += 1\n"
            "try:\n"
            f"    os.killpg(os.getpgid({parent}), signal.SIGKILL)\n"
            "except OSError:\n"
            "    errors += 1\n"
            "assert errors == 0, 'the parent survived'\n"
        ),
    }


@dataclass(frozen=True)
class Battle:
    outcomes: dict[str, Outcome]
    watched: Path
    before: dict[str, bytes]
    after: dict[str, bytes]
    connections: list[bytes]
    seconds: float
    leftovers: list[int]


def _escape_targets(watched: Path) -> list[Path]:
    """Where `write_outside` tries to write, besides the watched directory itself."""
    return [
        watched.parent / "pwned.txt",
        Path("/usr/pwned.txt"),
        Path("/pwned.txt"),
        Path("~root").expanduser() / "pwned.txt",
    ]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


def _sandbox_processes() -> list[int]:
    """Processes still running as one of this evaluator's sandbox uids."""
    lo, hi = uid_base(), uid_base() + BLOCK_UIDS
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if lo <= os.stat(f"/proc/{entry}").st_uid < hi:
                    found.append(int(entry))
            except OSError:
                pass
    return found


class _Server:
    """A loopback TCP server that records whatever connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def battle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battle]:
    isolation = bwrap_isolation()
    watched = tmp_path_factory.mktemp("watched")
    (watched / "sentinel.txt").write_text("keep me")
    (watched / "sub").mkdir()
    (watched / "sub" / "data.bin").write_bytes(b"\x00\x01")
    server = _Server()
    os.environ["EVALKIT_TEST_SECRET"] = SECRET
    before = _snapshot(watched)
    programs = attacks(watched, server.port, os.getpid())
    try:
        start = time.monotonic()
        outcomes = Sandbox(isolation, LIMITS).run(list(programs.values()))
        seconds = time.monotonic() - start
    finally:
        del os.environ["EVALKIT_TEST_SECRET"]
        time.sleep(0.3)  # a connection in flight reaches the server
        server.close()
    yield Battle(
        outcomes=dict(zip(programs, outcomes, strict=True)),
        watched=watched,
        before=before,
        after=_snapshot(watched),
        connections=server.received,
        seconds=seconds,
        leftovers=_sandbox_processes(),
    )


def _contained(b: Battle, name: str) -> Outcome:
    o = b.outcomes[name]
    assert not o.passed, f"{name} succeeded: {o}"
    assert o.seconds <= LIMITS.wall_seconds + SLACK, f"{name} ran {o.seconds:.1f}s"
    assert b.after == b.before, "files outside the scratch directory changed"
    assert not b.leftovers, f"sandbox processes left running: {b.leftovers}"
    escaped = [p for p in _escape_targets(b.watched) if p.exists()]
    assert not escaped, escaped
    return o


def test_fork_bomb(battle: Battle) -> None:
    o = _contained(battle, "fork_bomb")
    assert o.status in ("timeout", "cpu_limit", "failed", "killed")


def test_memory_bomb(battle: Battle) -> None:
    o = _contained(battle, "memory_bomb")
    assert "MemoryError" in o.stderr


def test_infinite_loop(battle: Battle) -> None:
    o = _contained(battle, "infinite_loop")
    assert o.status in ("timeout", "cpu_limit")


def test_process_ignoring_sigterm(battle: Battle) -> None:
    o = _contained(battle, "ignores_sigterm")
    assert o.status == "timeout"


def test_huge_stdout(battle: Battle) -> None:
    o = _contained(battle, "huge_stdout")
    # Python ignores SIGXFSZ, so the write fails with EFBIG instead of the signal killing it.
    assert o.status == "file_limit" or "File too large" in o.stderr, o
    assert 0 < len(o.stdout) <= 4096  # only a tail comes back to the evaluator


def test_writing_outside_the_scratch_directory(battle: Battle) -> None:
    o = _contained(battle, "write_outside")
    assert "no write outside" in o.stderr


def test_deleting_outside_the_scratch_directory(battle: Battle) -> None:
    _contained(battle, "delete_outside")
    assert (battle.watched / "sentinel.txt").read_text() == "keep me"


def test_reading_a_secret_from_the_parent_environment(battle: Battle) -> None:
    o = _contained(battle, "read_parent_secret")
    assert "no secret found" in o.stderr
    assert SECRET not in o.stdout + o.stderr


def test_connecting_to_a_loopback_server(battle: Battle) -> None:
    o = _contained(battle, "connect_loopback")
    assert battle.connections == []
    assert "Connection" in o.stderr or "Network" in o.stderr or "Errno" in o.stderr


def test_killing_the_parent(battle: Battle) -> None:
    o = _contained(battle, "kill_parent")
    assert "the parent survived" in o.stderr
    os.kill(os.getpid(), 0)  # still here


def test_all_attacks_ran_in_parallel_within_their_limits(battle: Battle) -> None:
    n = len(battle.outcomes)
    workers = Sandbox(choose("strict"), LIMITS).workers
    # Serial would be the sum; parallel is bounded by the waves of `workers` programs.
    waves = -(-n // workers)
    assert battle.seconds <= waves * (LIMITS.wall_seconds + SLACK)


def test_a_plain_program_passes_and_sees_a_clean_environment() -> None:
    program = (
        "import os, socket\n"
        "assert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG', 'PWD', 'LC_CTYPE'}, os.environ\n"
        "assert os.getcwd() == '/sandbox'\n"
        "open('out.txt', 'w').write('ok')\n"
        "assert open('out.txt').read() == 'ok'\n"
        "print('fine')\n"
    )
    o = Sandbox(bwrap_isolation(), LIMITS).run_one(program)
    assert o.passed, o
    assert o.stdout == "fine\n"


def test_strict_mode_refuses_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EvalkitError, match="strict"):
        choose("strict")
    auto = choose("auto")
    assert auto.kind == "rlimits" and "WARNING" in auto.describe()


def test_rlimits_mode_still_bounds_time_memory_and_output() -> None:
    """Without namespaces, the kernel limits and the process-group kill still hold."""
    iso = choose("rlimits")
    assert not iso.is_real and "rlimits only" in iso.describe()
    cases = attacks(Path("/nonexistent"), 1, os.getpid())
    # Without a pid namespace or a uid of its own, a child that leaves the session would
    # outlive the kill (docs/code.md), so this variant stays in its process group.
    cases["ignores_sigterm"] = cases["ignores_sigterm"].replace("os.setsid()", "pass")
    names = ["memory_bomb", "infinite_loop", "ignores_sigterm", "huge_stdout"]
    outcomes = Sandbox(iso, LIMITS).run([cases[n] for n in names])
    for name, o in zip(names, outcomes, strict=True):
        assert not o.passed, name
        assert o.seconds <= LIMITS.wall_seconds + SLACK, name
