"""A score table holds scores: every row of scores.parquet is a finite value inside its interval
over n > 0 items; run facts (a window, counts of items left out) are the manifest's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from display import display_frame

import evalkit
from evalkit.aggregate import summary_scores
from evalkit.store import read_run
from evalkit.tasks.base import ItemResult, MetricSpec
from evalkit.tasks.probes.common import Summary

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "checkpoints" / "tiny-base"
RUN_FACTS = ("model_window", "skipped_items", "n_items", "truncated")


def score_row_problems(scores: pd.DataFrame) -> list[str]:
    """Rows that are not a score: a non-finite value or interval, a value outside its interval,
    no items behind it, or a run fact dressed as a metric."""
    bad = []
    for r in scores.itertuples():
        where = f"{r.task}/{r.metric}"
        nums = (r.value, r.ci_low, r.ci_high)
        if not all(isinstance(x, float) and math.isfinite(x) for x in nums):
            bad.append(f"{where}: not finite {nums}")
        elif not r.ci_low <= r.value <= r.ci_high:
            bad.append(f"{where}: {r.value} outside [{r.ci_low}, {r.ci_high}]")
        if not r.n > 0:
            bad.append(f"{where}: n = {r.n}")
        if str(r.metric).startswith(RUN_FACTS):
            bad.append(f"{where}: a run fact, not a score")
    return bad


def test_the_row_checker_catches_what_it_should() -> None:
    good = {"task": "t", "metric": "acc", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 10}
    assert score_row_problems(pd.DataFrame([good])) == []  # positive control
    for change in (
        {"value": float("nan")},
        {"ci_low": float("nan")},
        {"value": 0.7},
        {"n": 0},
        {"metric": "skipped_items[len=1024]"},
        {"metric": "model_window"},
    ):
        assert len(score_row_problems(pd.DataFrame([{**good, **change}]))) == 1, change


def test_every_row_of_a_transfer_run_is_a_score_and_run_facts_are_in_the_manifest(
    tmp_path: Path,
) -> None:
    # tiny-base's window is 512: some needle lengths and few-shot ks do not fit, so there are
    # run facts to record (the old code wrote them as rows).
    run = evalkit.score(
        TINY,
        suite="transfer",
        limit=2,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        progress=False,
        sandbox="rlimits",
        device="cpu",
    )
    stored = read_run(run.path)
    assert score_row_problems(display_frame(stored.rows)) == []
    notes = {t["name"]: t.get("notes", {}) for t in stored.manifest["tasks"]}
    needle = notes["longctx_niah_single"]
    assert needle["model_window"] == 512
    assert needle["skipped_items"] and all(k.startswith("len=") for k in needle["skipped_items"])
    assert all(v > 0 for v in needle["skipped_items"].values())
    # The console and the report read them from there.
    from evalkit.report.build import write_report

    md = write_report([stored], tmp_path / "report").markdown.read_text()
    assert "items left out at" in md and "len=1024" in md


class _Task:
    name = "t"
    family = "f"
    metrics = (MetricSpec("x"),)

    def __init__(self, summaries: Sequence[Summary]) -> None:
        self.summaries = tuple(summaries)


def _results(n: int) -> list[ItemResult]:
    return [
        ItemResult(
            doc_id=i,
            prompt_hash=str(i),
            loglikelihoods=(),
            prediction="",
            target="",
            metrics={"x": float(i % 2)},
            tags={},
        )
        for i in range(n)
    ]


def _all_distinct(results: Sequence[ItemResult]) -> float:
    # 1 on the items themselves; (almost) always 0 on a resample with replacement, so the
    # percentile interval alone would exclude the value.
    ids = [r.doc_id for r in results]
    return float(len(set(ids)) == len(ids))


def test_summary_rows_are_finite_and_hold_their_value() -> None:
    def nan(results: Any) -> float:
        return float("nan")

    task = _Task(
        [
            Summary("undefined", nan, cluster=None),
            Summary("distinct", _all_distinct, cluster=None),
        ]
    )
    rows = {s.label: s for s in summary_scores(task, _results(30))}  # type: ignore[arg-type]
    assert "undefined" not in rows  # a NaN summary writes no row
    d = rows["distinct"]
    assert d.value == 1.0 and d.ci_low <= d.value <= d.ci_high and d.n == 30
