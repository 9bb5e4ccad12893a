"""The CLI end to end: a run directory on success; one line and exit 2 on bad input.

A real `python -m evalkit.cli` process for a complete run, an error after it and `--help`; the
other cases run the same typer app in this process (tests/clirun.py: no interpreter and torch
import per case)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from clirun import run_cli

from evalkit.store import read_run

LONG_TASK = """
name: too_long
family: test
version: 1
kind: loglikelihood
docs: {{path: docs.jsonl}}
prompt: "{{text}}"
continuation: " end"
"""


def evalkit(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def no_run_left(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.partial")]


def test_score_writes_a_complete_run(random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = evalkit(
        "score",
        random_ckpt,
        "--suite",
        "smoke",
        "--limit",
        "5",
        "--out",
        out,
        "--cache-dir",
        tmp_path / "cache",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "95% CI" in proc.stdout and f"run written to {out}" in proc.stdout
    run = read_run(out)
    # Family rows (level `family`, evalkit.aggregate.family_scores) sit beside the task rows.
    # (smoke's two reasoning tasks share no metric, so that family has no row.)
    assert {r.family for r in run.rows if r.level == "family"} == {"icl", "language_modeling"}
    assert {r.task for r in run.rows if r.level == "task"} == {
        "smoke_arith_mc",
        "smoke_arith_gen",
        "smoke_kv_recall",
        "smoke_prose_bpb",
    }
    for col in (
        "task",
        "doc_id",
        "prompt_hash",
        "loglikelihoods",
        "prediction",
        "target",
        "acc",
        "acc_norm",
        "p_correct",
        "bpb",
        "exact_match",
        "family",
        "difficulty",
    ):
        assert col in run.samples.columns, col
    assert list(pd.read_parquet(out / "scores.parquet").columns)[:7] == [
        "task",
        "family",
        "group",
        "level",
        "metric",
        "bucket",
        "label",
    ]
    mc = run.samples[run.samples.task == "smoke_arith_mc"]
    assert all(len(x) == 4 for x in mc.loglikelihoods)
    m = run.manifest
    assert m["model_fingerprint"] and m["tokenizer_fingerprint"] and m["suite"] == "smoke"
    assert {t["name"] for t in m["tasks"]} == {r.task for r in run.rows if r.level == "task"}
    assert all(len(t["content_hash"]) == 64 for t in m["tasks"])
    listing = evalkit("runs", tmp_path)
    assert listing.returncode == 0 and "run" in listing.stdout and "smoke" in listing.stdout
    # Runs are immutable.
    again = evalkit("score", random_ckpt, "--suite", "smoke", "--limit", "2", "--out", out)
    assert_user_error(again, "already exists")


def test_missing_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert_user_error(
        run_cli("score", tmp_path / "nope", "--suite", "smoke", "--out", out),
        "checkpoint not found",
    )
    no_run_left(out)


def test_no_tokenizer(random_ckpt: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(random_ckpt, ckpt)
    for p in ckpt.glob("tokenizer*"):
        p.unlink()
    (ckpt / "special_tokens_map.json").unlink(missing_ok=True)
    out = tmp_path / "run"
    proc = run_cli("score", ckpt, "--suite", "smoke", "--out", out, "--no-cache")
    assert_user_error(proc, "no tokenizer")
    no_run_left(out)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights(random_ckpt: Path, tmp_path: Path, damage: str) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(random_ckpt, ckpt)
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 4096)
    out = tmp_path / "run"
    proc = run_cli("score", ckpt, "--suite", "smoke", "--out", out, "--no-cache")
    assert_user_error(proc, "cannot load weights")
    no_run_left(out)


def test_unknown_task(random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("score", random_ckpt, "--tasks", "no_such_task_xyz", "--out", out)
    assert_user_error(proc, "no_such_task_xyz")
    no_run_left(out)


def test_unknown_suite(random_ckpt: Path, tmp_path: Path) -> None:
    assert_user_error(run_cli("score", random_ckpt, "--suite", "nope"), "unknown suite")


def test_malformed_task_yaml(random_ckpt: Path, tmp_path: Path) -> None:
    tdir = tmp_path / "tasks"
    tdir.mkdir()
    (tdir / "bad.yaml").write_text("name: bad\nkind: multiple_choice\nfamily: [unclosed\n")
    out = tmp_path / "run"
    proc = run_cli("score", random_ckpt, "--tasks", "bad", "--tasks-dir", tdir, "--out", out)
    assert_user_error(proc, "bad.yaml")
    no_run_left(out)


def test_document_longer_than_the_window(random_ckpt: Path, tmp_path: Path) -> None:
    # random_ckpt's window is 128 tokens; one document is far longer.
    tdir = tmp_path / "tasks"
    tdir.mkdir()
    (tdir / "long.yaml").write_text(LONG_TASK.format())
    docs = ['{"text": "short one"}', '{"text": "' + "lazy dog " * 200 + '"}', '{"text": "ok"}']
    (tdir / "docs.jsonl").write_text("\n".join(docs) + "\n")
    out = tmp_path / "run"
    args = ("score", random_ckpt, "--tasks", "too_long", "--tasks-dir", tdir, "--no-cache")
    proc = run_cli(*args, "--out", out)
    assert_user_error(proc, "task too_long doc 1")
    assert "window is 128" in proc.stderr
    no_run_left(out)
    # The documented alternative: left truncation runs and reports what it cut.
    proc = run_cli(*args, "--out", out, "--truncation", "left", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "1 truncated" in proc.stdout
    run = read_run(out)
    assert run.manifest["tasks"][0]["truncated_items"] == 1
    assert list(run.samples.truncated) == [False, True, False]


def test_help_is_fast_and_lists_commands() -> None:
    proc = evalkit("--help")
    assert proc.returncode == 0
    for cmd in ("score", "runs", "tasks"):
        assert cmd in proc.stdout
    # Importing the CLI must not import the heavy libraries.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, evalkit.cli; print(sorted(m for m in ('torch','transformers','pandas',"
            "'lm_eval') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_samples_parquet_round_trips_tags(random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = run_cli(
        "score",
        random_ckpt,
        "--tasks",
        "smoke_kv_recall",
        "--limit",
        "3",
        "--out",
        out,
        "--no-cache",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    samples = read_run(out).samples
    assert list(samples.doc_id) == [0, 1, 2]
    assert {"n_records", "position", "family"} <= set(samples.columns)


def test_no_guard_is_recorded_in_the_manifest(random_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(
        "score", random_ckpt, "--tasks", "smoke_arith_mc", "--limit", "2", "--out", out,
        "--no-cache", "--no-progress", "--no-guard",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = read_run(out).manifest
    assert manifest["parity_guard"]["status"] == "off (--no-guard)"
    assert manifest["backend_settings"]["path"] == "native"
