"""The emergence study of issue 16 as the CLI runs it: `evalkit sweep` over the committed
induction-control checkpoints, then `evalkit report` over the sweep's runs. Shared by
tests/test_controls_induction.py and tests/test_report_browser.py (one sweep per session,
through the `emergence` fixture in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONTROL = ROOT / "examples" / "checkpoints" / "induction-control"
TASKS = ("icl_induction", "icl_fewshot_curve", "icl_fewshot_lookup")
LIMIT = 8
METRIC = ("icl_induction", "copy_acc")


@dataclass(frozen=True)
class Emergence:
    runs: Path  # the sweep's --out: one run per checkpoint
    report: Path  # the report folder (index.html, report.md, plots/)
    sweep: dict[str, Any]  # the sweep's --json outcome
    cache: Path  # the result cache the sweep filled (re-scoring the same weights hits it)


def step_checkpoints() -> list[Path]:
    return sorted(p for p in CONTROL.glob("step-*") if p.is_dir())


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"evalkit {args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def run_emergence(tmp: Path, checkpoints: str | None = None) -> Emergence:
    """Sweep (2 local Ray CPUs, HF on CPU, fp32) and report, exactly as docs/controls.md says."""
    out, cache, outcome, report = tmp / "runs", tmp / "cache", tmp / "sweep.json", tmp / "report"
    cli(
        "sweep",
        checkpoints or str(CONTROL / "step-*"),
        "--tasks",
        ",".join(TASKS),
        "--limit",
        str(LIMIT),
        "--out",
        str(out),
        "--backend",
        "hf",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--num-cpus",
        "2",
        "--cache-dir",
        str(cache),
        "--json",
        str(outcome),
    )
    cli("report", str(out), "--out", str(report), "--resamples", "200")
    return Emergence(out, report, json.loads(outcome.read_text()), cache)
