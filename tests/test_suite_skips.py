"""Suites degrade per task, loudly (evalkit.skips): a task that cannot run on the checkpoint is
skipped with its reason (stderr, manifest `skipped_tasks`, console, report) and the others run;
`--strict-suite` / `strict_suite=True` stops everything instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from display import display_frame

import evalkit
import evalkit.pipeline.plan
from evalkit.api import ScoreRun
from evalkit.backends.fake import FakeBackend
from evalkit.errors import ContextTooLongError, EvalkitError
from evalkit.report.build import write_report
from evalkit.store import read_run

ROOT = Path(__file__).resolve().parents[1]
MIX_128 = ROOT / "examples" / "checkpoints" / "mix-a04-k01"  # a 128-token window
NEEDLES = {
    "longctx_niah_single",
    "longctx_niah_multikey",
    "longctx_niah_multivalue",
    "longctx_niah_multiquery",
}

TASK = """
name: {name}
family: test
version: 1
kind: loglikelihood
docs: {{path: {name}.jsonl}}
prompt: "{{text}}"
continuation: " end"
"""


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # (The sandbox in force may be said on a line before it.)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0]


def test_transfer_on_a_128_token_checkpoint_runs_every_task_that_fits(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ("score", MIX_128, "--suite", "transfer", "--limit", "1", "--no-progress")
    proc = cli(*args, "--out", out, "--cache-dir", tmp_path / "cache", "--sandbox", "rlimits")
    assert proc.returncode == 0, proc.stderr
    run = read_run(out)
    skipped = run.manifest["skipped_tasks"]
    by_task = {s["task"]: s for s in skipped}
    assert set(by_task) >= NEEDLES
    for name in NEEDLES:
        assert by_task[name]["family"] == "longctx"
        assert "no length can run" in by_task[name]["reason"]
        assert f"skipped task {name} (longctx)" in proc.stderr  # said when it happens
        assert f"skipped task {name} (longctx)" in proc.stdout  # and in the summary
    ran = {t["name"] for t in run.manifest["tasks"]}
    assert ran and not ran & set(by_task)  # a task is either run or skipped, never both
    shown = set(display_frame(run.rows).task)
    assert shown - {t for t in shown if t.startswith("family:")} == ran
    assert "family:longctx" not in shown
    # The report shows them.
    files = write_report([run], tmp_path / "report")
    md = files.markdown.read_text()
    assert "skipped task" in md and "longctx_niah_multikey" in md and "no length can run" in md


def test_strict_suite_stops_at_the_first_task_that_cannot_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = cli("score", MIX_128, "--suite", "transfer", "--strict-suite", "--out", out)
    one_line_error(proc, "no length can run")
    assert not out.exists()


def _tasks(tmp_path: Path, docs: dict[str, list[str]]) -> Path:
    tdir = tmp_path / "tasks"
    tdir.mkdir(exist_ok=True)
    for name, texts in docs.items():
        (tdir / f"{name}.yaml").write_text(TASK.format(name=name))
        (tdir / f"{name}.jsonl").write_text("".join(f'{{"text": "{t}"}}\n' for t in texts))
    return tdir


def _score(tmp_path: Path, docs: dict[str, list[str]], out: str, **kwargs: object) -> ScoreRun:
    """Score the given toy tasks (in the order given) on a fake backend with a 64-token window."""
    return evalkit.score(
        "fake-ckpt",
        tasks=list(docs),
        tasks_dir=_tasks(tmp_path, docs),
        backend=FakeBackend(max_length=64),
        out=tmp_path / out,
        use_cache=False,
        progress=False,
        **kwargs,  # type: ignore[arg-type]
    )


SHORT = ["a b", "c d"]
LONG = ["ok", "x " * 200]  # doc 1 is over the window


@pytest.mark.parametrize(
    ("docs", "strict", "skipped", "error"),
    [
        pytest.param({"long": LONG, "short": SHORT}, False, ["long"], None, id="one-skipped"),
        pytest.param({"short": SHORT}, False, [], None, id="none-skipped"),
        pytest.param(
            {"long": LONG, "short": SHORT},
            True,
            None,
            (ContextTooLongError, "task long doc 1"),
            id="strict-is-the-error-it-always-was",
        ),
        pytest.param(
            {"long1": ["x " * 200], "long2": ["y " * 300]},
            False,
            None,
            (EvalkitError, r"no task can run.*long1.*long2"),
            id="none-can-run-names-every-reason",
        ),
    ],
)
def test_tasks_over_the_window_are_skipped_and_the_rest_run(
    tmp_path: Path,
    docs: dict[str, list[str]],
    strict: bool,
    skipped: list[str] | None,
    error: tuple[type[Exception], str] | None,
) -> None:
    if error is not None:
        with pytest.raises(error[0], match=error[1]):
            _score(tmp_path, docs, "run", strict_suite=strict)
        assert not (tmp_path / "run").exists()  # no run directory, not even a partial one
        return
    run = _score(tmp_path, docs, "run", strict_suite=strict)
    assert [s["task"] for s in run.manifest["skipped_tasks"]] == skipped
    assert all(s["family"] == "test" for s in run.manifest["skipped_tasks"])
    ran = [t for t in docs if t not in (skipped or [])]
    assert [t["name"] for t in run.manifest["tasks"]] == ran
    assert {r.scope for r in run.rows if r.level == "task"} == set(ran)
    # as stored (an empty list is recorded, not left out)
    assert read_run(tmp_path / "run").manifest["skipped_tasks"] == run.manifest["skipped_tasks"]


def test_a_skip_says_why_in_the_manifest_and_the_catalog(tmp_path: Path) -> None:
    run = _score(tmp_path, {"long": LONG, "short": SHORT}, "run")
    (skip,) = run.manifest["skipped_tasks"]
    assert set(skip) == {"task", "family", "reason"}
    reason = skip["reason"]
    assert "doc 1" in reason and "window is 64" in reason and "--truncation left" in reason
    assert {(r.level, r.scope) for r in run.rows} == {("task", "short"), ("family", "test")}
    # The catalog's runs view carries them too.
    from evalkit.catalog import query

    (row,) = query("SELECT skipped_tasks, n_skipped_tasks, n_tasks FROM runs", tmp_path).rows
    assert row == ("long", 1, 1)


def test_code_tasks_without_a_strict_sandbox_are_skipped_not_the_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_bwrap(mode: str) -> object:
        raise EvalkitError("--sandbox strict: no real isolation for generated code here: test")

    monkeypatch.setattr(evalkit.pipeline.plan, "choose", no_bwrap)
    tdir = _tasks(tmp_path, {"short": ["a b", "c d"]})
    kwargs = dict(
        tasks=["code_tiny_functions", "short"],
        tasks_dir=tdir,
        backend=FakeBackend(max_length=512),
        limit=2,
        use_cache=False,
        progress=False,
        sandbox="strict",
    )
    run = evalkit.score("fake-ckpt", out=tmp_path / "run", **kwargs)  # type: ignore[arg-type]
    (skip,) = run.manifest["skipped_tasks"]
    assert skip["task"] == "code_tiny_functions" and skip["family"] == "code"
    assert "no real isolation" in skip["reason"]
    assert run.manifest["sandbox"] is None
    with pytest.raises(EvalkitError, match="no real isolation"):
        evalkit.score("fake-ckpt", out=tmp_path / "s", strict_suite=True, **kwargs)  # type: ignore[arg-type]
    # An unknown mode is the user's mistake, not the host's: never a skip.
    with pytest.raises(EvalkitError, match="unknown sandbox mode"):
        evalkit.score("fake-ckpt", out=tmp_path / "u", **{**kwargs, "sandbox": "nope"})  # type: ignore[arg-type]


# A stage's output is a value: nothing in a plan or an execution can be changed after the stage
# returned it (the skips a stage caused are its own tuple, not a recorder the next stage writes).
# The exceptions, by field: the live backend and tokenizer a run needs, the tasks (objects behind
# the Task protocol), and routing's table (pandas has no read-only frame; it is written as is).
LIVE = {"backend", "model", "text_tokenizer", "routing_frame", "tasks"}
# The stages' own values are checked all the way down; another module's dataclass they hold (a
# RunConfig, an EngineResult) must be frozen, and its members are that module's concern.
OWN = ("Plan", "Execution", "SkippedTask")


def _mutable_parts(value: object, where: str, seen: set[int]) -> list[str]:
    import dataclasses
    from collections.abc import Mapping
    from types import MappingProxyType

    if id(value) in seen or value is None or isinstance(value, str | bytes | int | float | Path):
        return []
    seen.add(id(value))
    if isinstance(value, list | dict | set | bytearray):
        return [f"{where}: {type(value).__name__}"]
    if isinstance(value, tuple | frozenset):
        return [m for i, v in enumerate(value) for m in _mutable_parts(v, f"{where}[{i}]", seen)]
    if isinstance(value, MappingProxyType):
        return [m for k, v in value.items() for m in _mutable_parts(v, f"{where}[{k!r}]", seen)]
    if isinstance(value, Mapping):
        return [f"{where}: a writable mapping ({type(value).__name__})"]
    if dataclasses.is_dataclass(value):
        params = getattr(type(value), "__dataclass_params__", None)
        if params is None or not params.frozen:
            return [f"{where}: a dataclass that is not frozen ({type(value).__name__})"]
        if type(value).__name__ not in OWN:
            return []
        return [
            m
            for f in dataclasses.fields(value)
            if f.name not in LIVE
            for m in _mutable_parts(getattr(value, f.name), f"{where}.{f.name}", seen)
        ]
    if isinstance(value, Exception) or hasattr(value, "__dict__"):
        # An object with writable state (an accumulator, a recorder): not a value.
        return [f"{where}: an object with writable state ({type(value).__name__})"]
    return []


def test_mutable_parts_finds_what_a_value_must_not_hold() -> None:
    # Controls of the checker itself: it finds a list, a dict and a recorder, deep down.
    from dataclasses import dataclass
    from types import MappingProxyType

    class Recorder:
        def __init__(self) -> None:
            self.seen: list[str] = []

    @dataclass(frozen=True)
    class Plan:
        a: tuple[object, ...]
        b: object

    assert _mutable_parts(Plan((1, "x"), MappingProxyType({"k": (2,)})), "v", set()) == []
    assert _mutable_parts(Plan((1, [2]), None), "v", set()) == ["v.a[1]: list"]
    assert _mutable_parts(Plan((), MappingProxyType({"k": {}})), "v", set()) == ["v.b['k']: dict"]
    assert _mutable_parts(Plan((Recorder(),), None), "v", set()) == [
        "v.a[0]: an object with writable state (Recorder)"
    ]


def test_plan_and_execution_are_values_with_their_own_skips(tmp_path: Path) -> None:
    from evalkit.pipeline.config import RunConfig
    from evalkit.pipeline.execute import execute
    from evalkit.pipeline.plan import Output, Runtime, plan

    docs = {"long": LONG, "short": SHORT, "nofit": ["z " * 250]}
    tdir = _tasks(tmp_path, docs)
    config = RunConfig("fake-ckpt", tasks=tuple(docs), tasks_dir=str(tdir))
    planned = plan(
        config, Output(tmp_path / "run", None, False, False), Runtime(FakeBackend(max_length=64))
    )
    assert planned.skipped == ()  # every task builds items; the window is hit when they run
    first = execute(planned)
    assert [s.task for s in first.skipped] == ["long", "nofit"]
    assert [t.name for t in first.tasks] == ["short"]
    # The plan is unchanged by its execution: executed again, it skips the same, once.
    again = execute(planned)
    assert planned.skipped == () and again.skipped == first.skipped
    assert _mutable_parts(planned, "plan", set()) == []
    assert _mutable_parts(first, "execution", set()) == []
