"""Bad user input ends in one EvalkitError line (exit 2 in the CLI), before any model loads:
options of `score`, the folders it writes, and run directories damaged after they were written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from clirun import run_cli

import evalkit
from evalkit.errors import EvalkitError
from evalkit.inputs import check_device, check_writable_folder
from evalkit.store import read_manifest, read_run, write_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "checkpoints" / "tiny-base"


@pytest.fixture(scope="module")
def unloadable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-base with weights that cannot load: an error about anything else came first."""
    ckpt = tmp_path_factory.mktemp("unloadable") / "ckpt"
    shutil.copytree(TINY, ckpt)
    (ckpt / "model.safetensors").write_bytes(b"\x07" * 4096)
    return ckpt


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "bogus"}, "unknown device 'bogus'"),
        ({"device": "cuda:99"}, "--device cuda:99"),
        ({"token_budget": 0}, "--token-budget must be a positive"),
        ({"token_budget": -5}, "--token-budget must be a positive"),
        ({"vllm_options": ("gpu_memory_utilization=0.5",), "backend": "hf"}, "--vllm-option"),
        ({"out": Path("/proc/evalkit-run")}, "cannot write the run directory"),
        ({"limit": 0}, "--limit must be positive"),
        ({"provenance": "/nonexistent/provenance.yaml"}, "provenance file not found"),
        ({"sandbox": "bogus"}, "unknown sandbox mode"),
    ],
)
def test_bad_score_options_fail_before_the_model_loads(
    unloadable: Path, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    kwargs: dict[str, Any] = {
        "suite": "smoke",
        "limit": 1,
        "out": tmp_path / "run",
        "use_cache": False,
        "progress": False,
        **options,
    }
    with pytest.raises(EvalkitError, match=message.replace("(", r"\(")) as info:
        evalkit.score(unloadable, **kwargs)
    assert "cannot load weights" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_out_under_a_file_fails_before_the_model_loads(unloadable: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(EvalkitError, match="cannot write the run directory"):
        evalkit.score(
            unloadable, suite="smoke", limit=1, out=tmp_path / "f" / "run", use_cache=False
        )


def test_checks_pass_what_is_fine(tmp_path: Path) -> None:  # positive controls
    check_device("cpu")
    check_device("auto")
    check_writable_folder(tmp_path / "new" / "folder", "run directory")
    assert (tmp_path / "new" / "folder").is_dir()
    assert not list((tmp_path / "new" / "folder").iterdir())  # the probe file is gone


def _run(tmp_path: Path) -> Path:
    from evalkit.schema import ScoreRow
    from evalkit.store import samples_frame, scores_frame
    from evalkit.tasks.base import ItemResult

    scores = scores_frame([ScoreRow("t", "f", "acc", 1.0, 1.0, 1.0, 1, True, primary=True)])
    samples = samples_frame({"t": [ItemResult(0, "h", (), None, "a", {"acc": 1.0})]})
    return write_run(tmp_path / "run", {"schema_version": 2}, samples, scores)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("manifest-json", "manifest.json"),
        ("manifest-list", "not a JSON object"),
        ("scores-garbage", "scores.parquet"),
        ("samples-missing", "samples.parquet is missing"),
    ],
)
def test_a_damaged_run_directory_is_one_line(tmp_path: Path, damage: str, message: str) -> None:
    run = _run(tmp_path)
    read_run(run)  # positive control
    if damage == "manifest-json":
        (run / "manifest.json").write_text("{")
    elif damage == "manifest-list":
        (run / "manifest.json").write_text(json.dumps([1, 2]))
    elif damage == "scores-garbage":
        (run / "scores.parquet").write_text("garbage")
    else:
        (run / "samples.parquet").unlink()
    with pytest.raises(EvalkitError, match=f"damaged run directory .*{message}"):
        read_run(run)
    if damage.startswith("manifest"):
        with pytest.raises(EvalkitError, match="damaged run directory"):
            read_manifest(run)


def test_write_run_under_a_file_is_one_line(tmp_path: Path) -> None:
    import pandas as pd

    (tmp_path / "f").write_text("x")
    with pytest.raises(EvalkitError, match="cannot write run directory"):
        write_run(tmp_path / "f" / "run", {}, pd.DataFrame(), pd.DataFrame())


def test_cli_says_damage_in_one_line_and_exits_2(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "manifest.json").write_text("{")
    for args in (["runs", str(tmp_path)], ["report", str(run), "--out", str(tmp_path / "rep")]):
        proc = run_cli(*args)  # in this process: tests/clirun.py
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "damaged run directory" in lines[0], proc.stderr


def test_report_into_an_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    from evalkit.report.build import write_report

    run = read_run(_run(tmp_path))
    (tmp_path / "f").write_text("x")
    with pytest.raises(EvalkitError, match="cannot write the report"):
        write_report([run], tmp_path / "f" / "rep")
