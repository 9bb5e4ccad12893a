"""Run directories are atomic and immutable; provenance is validated."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from evalkit.aggregate import task_scores
from evalkit.errors import EvalkitError
from evalkit.provenance import find_provenance, load_provenance
from evalkit.schema import SCHEMA_VERSION, ScoreRow
from evalkit.stats import mean_ci
from evalkit.store import list_runs, read_manifest, read_run, samples_frame, scores_frame, write_run
from evalkit.tasks.base import ItemResult, MetricSpec


def _results() -> list[ItemResult]:
    return [
        ItemResult(i, f"h{i}", (-1.0, -2.0), "a", "a", {"acc": float(i % 2)}, {"lang": "en"})
        for i in range(10)
    ]


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    scores = task_scores("t", "fam", [MetricSpec("acc")], _results())
    manifest = {"schema_version": SCHEMA_VERSION, "x": 1}
    out = write_run(
        tmp_path / "run", manifest, samples_frame({"t": _results()}), scores_frame(scores)
    )
    run = read_run(out)
    assert dict(run.manifest) == manifest and run.manifest.config is None
    assert list(run.samples.columns[:6]) == [
        "task",
        "doc_id",
        "prompt_hash",
        "loglikelihoods",
        "prediction",
        "target",
    ]
    assert run.samples.lang.tolist() == ["en"] * 10
    assert (run.metric_columns, run.tag_columns) == (("acc",), ("lang",))
    (row,) = run.rows
    assert (row.task, row.metric, row.n, row.level, row.primary) == ("t", "acc", 10, "task", True)
    assert row.ci_low <= row.value == 0.5 <= row.ci_high
    assert list_runs(tmp_path) == [out]
    # A path given as text reads the same (a Python caller's string, not a traceback).
    assert read_run(str(out)).rows == run.rows and read_manifest(str(out)) == manifest


def test_an_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    write_run(tmp_path / "run", {}, frame, frame)
    with pytest.raises(EvalkitError, match="already exists"):
        write_run(tmp_path / "run", {}, frame, frame)


def test_a_failed_write_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    class Boom:
        def to_parquet(self, *a: object, **k: object) -> None:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_run(tmp_path / "run", {}, pd.DataFrame({"a": [1]}), Boom())
    assert list(tmp_path.iterdir()) == []
    assert list_runs(tmp_path) == []


def test_mean_ci_is_reproducible_and_covers_the_mean() -> None:
    values = [float(i % 3 == 0) for i in range(90)]
    a, b = mean_ci(values), mean_ci(values)
    assert a == b and a.low < a.value < a.high and a.n == 90
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, float("nan")])


def test_scores_reject_an_empty_metric() -> None:
    with pytest.raises(EvalkitError, match="no values"):
        task_scores("t", "f", [MetricSpec("missing")], _results())
    assert isinstance(task_scores("t", "f", [MetricSpec("acc")], _results())[0], ScoreRow)


PROV = """
schema_version: 1
checkpoint: {run: r, step: 10, tokens_seen: 1000, parent: null}
slices:
  - {name: arithmetic, tokens: 600, share: 0.6}
  - {name: prose, tokens: 400, share: 0.4}
"""


def test_provenance_is_loaded_and_validated(tmp_path: Path) -> None:
    p = tmp_path / "provenance.yaml"
    p.write_text(PROV)
    assert load_provenance(p).slices[0].name == "arithmetic"
    assert find_provenance(tmp_path, None) is not None
    p.write_text(PROV.replace("tokens: 600", "tokens: many"))
    with pytest.raises(EvalkitError, match=r"slices\[0\]\.tokens"):
        load_provenance(p)
    p.write_text(PROV.replace("name: prose", "name: arithmetic"))
    with pytest.raises(EvalkitError, match="repeats"):
        load_provenance(p)
    with pytest.raises(EvalkitError, match="not found"):
        find_provenance(tmp_path, tmp_path / "missing.yaml")
