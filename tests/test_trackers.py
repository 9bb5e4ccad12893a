"""`--log wandb|tensorboard`: scores, CI bounds, gate verdicts and provenance steps, read back.

TensorBoard's event files are read with TensorBoard's own `EventAccumulator`; W&B runs in its
offline mode and its local `.wandb` file is read with W&B's own record reader. Both must hold
exactly the numbers in the runs' scores.parquet, at the checkpoints' training steps.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import pytest
from display import display_frame
from synthetic_runs import TaskData, make_run

from evalkit.errors import EvalkitError
from evalkit.store import read_run
from evalkit.trackers import Tracked, check_tracker, log_runs

STEPS = (300, 100, 200)  # out of training order on purpose


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    out = []
    for i, step in enumerate(STEPS):
        acc = [1.0] * (3 + i) + [0.0] * (5 - i)
        out.append(
            make_run(
                root / f"ckpt-{step}",
                {"t": TaskData("fam", {"acc": acc})},
                step=step,
                run_name="train",
            )
        )
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "index.html"
    path.write_text("<html><body><h1>evalkit report</h1></body></html>")
    return path


def _expected(run: Path) -> dict[str, float]:
    frame = display_frame(read_run(run).rows)
    out = {}
    for r in frame.itertuples(index=False):
        out[f"{r.task}/{r.metric}"] = float(r.value)
        out[f"{r.task}/{r.metric}/ci_low"] = float(r.ci_low)
        out[f"{r.task}/{r.metric}/ci_high"] = float(r.ci_high)
    return out


def _tracked(runs: list[Path], report: Path) -> list[Tracked]:
    gates = {100: None, 200: "pass", 300: "regression"}
    return [
        Tracked(r, gates[s], report if s == 300 else None) for r, s in zip(runs, STEPS, strict=True)
    ]


def test_tensorboard_event_files_hold_every_score_at_its_step(
    runs: list[Path], report: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    where = log_runs("tensorboard", _tracked(runs, report), tmp_path / "tb")
    acc = EventAccumulator(str(where), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for run, step in zip(runs, STEPS, strict=True):
        for key, value in _expected(run).items():
            assert key in tags
            got = {e.step: e.value for e in acc.Scalars(key)}
            assert got[step] == pytest.approx(value, abs=1e-6), (key, step)
    assert [e.step for e in acc.Scalars("t/acc")] == sorted(STEPS)  # training order
    gate = {e.step: e.value for e in acc.Scalars("gate/passed")}
    assert gate == {200: 1.0, 300: 0.0}
    assert (where / "reports" / "ckpt-300.html").read_text() == report.read_text()


def _wandb_history(root: Path) -> list[dict[str, Any]]:
    from wandb.proto import wandb_internal_pb2 as pb2
    from wandb.sdk.internal.datastore import DataStore

    (path,) = glob.glob(str(root / "wandb" / "offline-run-*" / "run-*.wandb"))
    # log_runs returns only once W&B has written the file: read it at once, no waiting here.
    store = DataStore()
    store.open_for_scan(path)
    rows, kinds = [], []
    while (data := store.scan_data()) is not None:
        rec = pb2.Record()
        rec.ParseFromString(data)
        kinds.append(rec.WhichOneof("record_type"))
        if rec.WhichOneof("record_type") == "history":
            rows.append(
                {
                    (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
    assert "exit" in kinds, kinds  # the whole run was written, up to its end
    return rows


def test_wandb_offline_run_holds_every_score_at_its_step(
    runs: list[Path], report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    log_runs("wandb", _tracked(runs, report), tmp_path / "wb", name="sweep")
    rows = _wandb_history(tmp_path / "wb")
    assert [r["provenance/step"] for r in rows] == sorted(STEPS)
    by_step = {r["provenance/step"]: r for r in rows}
    for run, step in zip(runs, STEPS, strict=True):
        for key, value in _expected(run).items():
            assert by_step[step][key] == pytest.approx(value), (key, step)
    assert by_step[300]["gate/outcome"] == "regression" and by_step[300]["gate/passed"] == 0
    assert by_step[200]["gate/passed"] == 1 and "gate/passed" not in by_step[100]
    assert by_step[300]["report/_type"] == "html-file"


def test_unknown_tracker_and_empty_logs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalkitError, match="unknown tracker 'mlflow'"):
        check_tracker("mlflow")
    with pytest.raises(EvalkitError, match="no runs"):
        log_runs("tensorboard", [], tmp_path)


def test_score_log_tensorboard_from_the_cli(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from typer.testing import CliRunner

    from evalkit.cli import app

    ckpt = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / "tiny-base"
    out, logs = tmp_path / "run", tmp_path / "logs"
    args = ["score", str(ckpt), "--tasks", "smoke_arith_mc", "--limit", "6", "--no-cache"]
    res = CliRunner().invoke(
        app,
        [
            *args,
            "--device",
            "cpu",
            "--out",
            str(out),
            "--log",
            "tensorboard",
            "--log-dir",
            str(logs),
        ],
    )
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(logs), size_guidance={"scalars": 0})
    acc.Reload()
    step = read_run(out).manifest["provenance"]["checkpoint"]["step"]
    (event,) = acc.Scalars("smoke_arith_mc/acc")
    assert event.step == step
    assert event.value == pytest.approx(_expected(out)["smoke_arith_mc/acc"])
    assert (logs / "reports" / "run.html").is_file()


@pytest.mark.parametrize("command", ["score", "sweep"])
def test_an_unknown_tracker_stops_before_any_work(command: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from evalkit.cli import app

    ckpt = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / "tiny-base"
    args = [command, str(ckpt), "--suite", "smoke", "--out", str(tmp_path / "o"), "--log", "mlflow"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "unknown tracker 'mlflow'" in res.output
    assert not (tmp_path / "o").exists()
