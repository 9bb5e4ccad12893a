"""`evalkit sweep` on a local 2-CPU Ray instance: retries a killed worker, resumes, watches.

One Ray instance serves the whole module (starting Ray is slow on a small machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from clirun import run_cli
from display import display_frame

from evalkit.catalog import query, trajectory
from evalkit.store import is_run, read_run
from evalkit.sweep import CRASH_ENV, SweepOptions, sweep, watch

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "examples" / "checkpoints"
GATE = ROOT / "tasks" / "gates" / "smoke.yaml"
LIMIT = 3
OPTIONS = SweepOptions(suite="smoke", score_kwargs={"limit": LIMIT, "use_cache": False})


@pytest.fixture(scope="module")
def ray_local() -> object:
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def copy_with_step(src: Path, dst: Path, step: int) -> Path:
    shutil.copytree(src, dst)
    prov_path = dst / "provenance.yaml"
    prov = yaml.safe_load(prov_path.read_text())
    prov["checkpoint"]["step"] = step
    prov_path.write_text(yaml.safe_dump(prov, sort_keys=False))
    return dst


@pytest.fixture(scope="module")
def swept(ray_local: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """Three checkpoints swept with the job for tiny-chat killed (SIGKILL) on its first try."""
    base = tmp_path_factory.mktemp("sweep")
    ckpts = base / "ckpts"
    ckpts.mkdir()
    shutil.copytree(CHECKPOINTS / "tiny-base", ckpts / "tiny-base")
    shutil.copytree(CHECKPOINTS / "tiny-chat", ckpts / "tiny-chat")
    copy_with_step(CHECKPOINTS / "tiny-base", ckpts / "tiny-base-step900", 900)
    out = base / "out"
    # With a result cache, the crash comes right after the job's first batch is cached.
    cached = replace(OPTIONS, score_kwargs={"limit": LIMIT, "cache_dir": base / "cache"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CRASH_ENV, "tiny-chat")
        report = sweep([str(ckpts / "*")], out=out, options=cached, progress=False)
    return ckpts, out, report


def test_sweep_retries_a_killed_worker_and_equals_single_process_runs(
    swept: tuple[Path, Path, object], tmp_path: Path
) -> None:
    import evalkit

    ckpts, out, report = swept
    by_name = {r.job.name: r for r in report.results}  # type: ignore[attr-defined]
    assert [r.job.name for r in report.results] == [  # type: ignore[attr-defined]
        "tiny-chat",
        "tiny-base-step900",
        "tiny-base",
    ], "jobs are in training order (provenance step)"
    assert {n: r.status for n, r in by_name.items()} == dict.fromkeys(by_name, "done")
    assert report.exit_code == 0  # type: ignore[attr-defined]
    # The killed job ran twice, in two different worker processes; the others once.
    assert {n: r.attempts for n, r in by_name.items()} == {
        "tiny-chat": 2,
        "tiny-base-step900": 1,
        "tiny-base": 1,
    }
    # It was killed mid-way: the retry reused what the first attempt had cached.
    engine = read_run(out / "tiny-chat").manifest["engine"]
    assert engine["reused"] > 0, engine
    pids = [
        line.split()[0] for line in (out / ".sweep" / "tiny-chat.attempts").read_text().splitlines()
    ]
    assert len(set(pids)) == 2
    assert not list(out.glob(".*.partial-*"))
    for name in by_name:
        swept_run = read_run(out / name)
        single = evalkit.score(
            ckpts / name,
            suite="smoke",
            limit=LIMIT,
            out=tmp_path / name,
            use_cache=False,
            progress=False,
        )
        alone = read_run(single.path)
        assert display_frame(swept_run.rows).equals(display_frame(alone.rows)), name
        assert swept_run.samples.equals(alone.samples), name
        assert swept_run.manifest["model_fingerprint"] == alone.manifest["model_fingerprint"]
    # The catalog sees the three runs with their provenance steps.
    steps = query("SELECT name, step FROM runs ORDER BY step", out).rows
    assert steps == (("tiny-chat", 300), ("tiny-base-step900", 900), ("tiny-base", 1500))
    lm = trajectory(out, metrics=["bpb"], names=["language_modeling"])
    # Grouped by training run (the provenance's run name), then by step.
    assert list(zip(lm["ckpt_run"], lm["step"], strict=True)) == [
        ("tiny-base", 900),
        ("tiny-base", 1500),
        ("tiny-chat", 300),
    ]
    for row in lm.itertuples():
        scores = display_frame(read_run(Path(row.run)).rows)
        want = scores[(scores.task == "family:language_modeling") & (scores.metric == "bpb")]
        assert row.value == want.value.item()


def test_a_finished_sweep_run_again_skips_everything(swept: tuple[Path, Path, object]) -> None:
    ckpts, out, _ = swept
    before = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in out.iterdir() if is_run(p)}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "evalkit.cli", "sweep", str(ckpts / "*"), "--suite", "smoke"),
            *("--limit", str(LIMIT), "--no-cache", "--out", str(out), "--no-progress"),
            *("--json", str(out.parent / "again.json")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    again = json.loads((out.parent / "again.json").read_text())
    assert [j["status"] for j in again["jobs"]] == ["skipped"] * 3
    assert [j["attempts"] for j in again["jobs"]] == [0, 0, 0]
    after = {p.name: (p / "manifest.json").stat().st_mtime_ns for p in out.iterdir() if is_run(p)}
    assert after == before


def test_failed_jobs_are_reported_without_stopping_the_others(
    ray_local: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crasher = tmp_path / "crasher"
    shutil.copytree(CHECKPOINTS / "tiny-chat", crasher)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(CHECKPOINTS / "tiny-chat", corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x07" * 4096)
    monkeypatch.setenv(CRASH_ENV, "crasher")
    report = sweep(
        [crasher, corrupt],
        out=tmp_path / "out",
        options=replace(OPTIONS, retries=0),
        progress=False,
    )
    by_name = {r.job.name: r for r in report.results}
    assert by_name["crasher"].status == "failed"
    assert by_name["crasher"].attempts == 1
    assert "WorkerCrashedError" in (by_name["crasher"].error or "")
    # A user error is not retried; the message is evalkit's one line.
    assert by_name["corrupt"].status == "failed"
    assert by_name["corrupt"].attempts == 1
    assert "cannot load weights" in (by_name["corrupt"].error or "")
    assert report.exit_code == 1
    assert not any(is_run(p) for p in (tmp_path / "out").iterdir())


def test_watch_scores_a_checkpoint_copied_in_after_it_started(
    swept: tuple[Path, Path, object],
) -> None:
    ckpts, out, _ = swept
    new = ckpts / "tiny-base-step1800"
    staged = copy_with_step(CHECKPOINTS / "tiny-base", out.parent / "staged", 1800)
    weights = (staged / "model.safetensors").read_bytes()
    copied: dict[str, float] = {}

    def copy_slowly() -> None:
        # Like a trainer's upload: small files first, then the weights in pieces.
        new.mkdir()
        for p in staged.iterdir():
            if p.name != "model.safetensors":
                shutil.copy2(p, new / p.name)
        chunk = len(weights) // 5 + 1
        with (new / "model.safetensors").open("wb") as fh:
            for i in range(0, len(weights), chunk):
                fh.write(weights[i : i + chunk])
                fh.flush()
                time.sleep(0.3)
        copied["at"] = time.time()

    copier = threading.Thread(target=copy_slowly)

    def on_poll(i: int) -> None:
        if i == 1:
            copier.start()

    poll, settle = 0.5, 1.5
    report = watch(
        ckpts,
        out=out,
        options=OPTIONS,
        poll=poll,
        settle=settle,
        max_checkpoints=4,
        timeout=180,
        gate_policy=GATE,
        progress=False,
        on_poll=on_poll,
    )
    copier.join()
    by_name = {r.job.name: r for r in report.results}
    assert {n: r.status for n, r in by_name.items()} == {
        "tiny-chat": "skipped",
        "tiny-base-step900": "skipped",
        "tiny-base": "skipped",
        "tiny-base-step1800": "done",
    }
    # Scored only once the copy was complete, and soon after.
    first = (out / ".sweep" / "tiny-base-step1800.attempts").read_text().splitlines()[0]
    started = float(first.split()[1])
    assert copied["at"] <= started < copied["at"] + poll + settle + 15
    # Same weights as tiny-base: the complete file was scored.
    assert display_frame(read_run(out / "tiny-base-step1800").rows).equals(
        display_frame(read_run(out / "tiny-base").rows)
    )
    # Gated against the previous checkpoint: too few items to decide, so inconclusive.
    assert by_name["tiny-base-step1800"].gate == "inconclusive"
    assert by_name["tiny-base-step1800"].gate_baseline == "tiny-base"
    assert (out / ".sweep" / "gates" / "tiny-base-step1800.json").is_file()
    assert by_name["tiny-chat"].gate is None  # the first has nothing before it
    assert report.exit_code == 0


def test_sweep_cli_user_errors_are_one_line(tmp_path: Path) -> None:
    # In this process (tests/clirun.py): every case fails before a job or Ray starts; the real
    # `python -m evalkit.cli sweep` process is test_a_finished_sweep_run_again_skips_everything.
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_cli("sweep", *args)

    cases = [
        (("--suite", "smoke", "--out", tmp_path / "o"), "give checkpoints"),
        ((tmp_path / "nope", "--suite", "smoke", "--out", tmp_path / "o"), "not a checkpoint"),
        (
            (CHECKPOINTS / "tiny-base", "--suite", "smoke", "--score-option", "bogus=1"),
            "unknown score option(s) bogus",
        ),
        (("--watch", tmp_path / "nope", "--suite", "smoke"), "folder to watch not found"),
    ]
    for args, fragment in cases:
        proc = run(*args)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()
