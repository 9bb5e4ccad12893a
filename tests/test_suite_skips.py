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
