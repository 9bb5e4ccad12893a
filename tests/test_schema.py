"""The stored run's schema: typed rows and manifest, one golden run per version, the v1
migration, and refusal of a version this evalkit does not know."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from display import display_frame

from evalkit.errors import EvalkitError
from evalkit.migrate import split_v1_metric
from evalkit.run_facts import backend_facts
from evalkit.schema import SCHEMA_VERSION, ScoreRow, rows_from_table, scores_table
from evalkit.store import read_info, read_manifest, read_run

GOLDEN = Path(__file__).resolve().parent / "golden_runs"


def _key(r: ScoreRow) -> tuple[object, ...]:
    return (r.level, r.scope, r.metric, r.bucket)


def test_the_current_version_has_a_golden_run() -> None:
    manifest = json.loads((GOLDEN / f"v{SCHEMA_VERSION}" / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert json.loads((GOLDEN / "v1" / "manifest.json").read_text())["schema_version"] == 1
    assert json.loads((GOLDEN / "v2" / "manifest.json").read_text())["schema_version"] == 2


def test_a_v2_run_reads_as_the_same_run_written_as_v3_without_its_config() -> None:
    old, new = read_run(GOLDEN / "v2"), read_run(GOLDEN / "v3")
    assert len(new.rows) == len(old.rows) > 100
    assert display_frame(old.rows).equals(display_frame(new.rows))
    assert {_key(r): r for r in old.rows} == {_key(r): r for r in new.rows}
    assert old.manifest.config is None and old.manifest["migrated_from"] == 2
    assert old.manifest.schema_version == new.manifest.schema_version == SCHEMA_VERSION
    config = new.manifest.config
    assert config is not None and config.limit == 24 and "icl_label_probe" in config.tasks
    assert new.manifest["config"]["tasks"] == list(config.tasks)  # the mapping view agrees


def test_a_migrated_v1_run_equals_the_same_run_written_as_v2() -> None:
    old, new = read_run(GOLDEN / "v1"), read_run(GOLDEN / "v2")
    assert len(new.rows) == len(old.rows) > 100
    assert {_key(r): r for r in old.rows} == {_key(r): r for r in new.rows}
    assert (old.metric_columns, set(old.tag_columns)) == (new.metric_columns, set(new.tag_columns))
    cols = sorted(new.samples.columns)
    assert sorted(old.samples.columns) == cols
    a = old.samples[cols].sort_values(["task", "doc_id"]).reset_index(drop=True)
    b = new.samples[cols].sort_values(["task", "doc_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        a.drop(columns=["loglikelihoods"]), b.drop(columns=["loglikelihoods"])
    )
    assert display_frame(old.rows).equals(display_frame(new.rows))  # as shown, too


def test_rows_say_their_structure_in_fields() -> None:
    run = read_run(GOLDEN / "v2")
    by = {(r.task, r.label): r for r in run.rows}
    cell = by["g_niah_single", "recall[len=1024,depth=100]"]
    assert (cell.metric, cell.bucket_map, cell.level) == (
        "recall",
        {"length": 1024, "depth": 100},
        "task",
    )
    eff = by["g_niah_single", "effective_length[recall>=0.85]"]
    assert (eff.metric, eff.bucket_map, eff.value) == (
        "effective_length",
        {"threshold": 0.85},
        1024,
    )
    assert by["icl_fewshot_curve", "acc[k=4]"].bucket_map == {"k": 4}
    assert by["icl_label_probe", "acc[pct_50]"].bucket_map == {"condition": "pct_50"}
    gap = by["multilingual_number_words_mc", "acc_gap_en[fr]"]
    assert (gap.metric, gap.bucket_map) == ("acc_gap_en", {"language": "fr"})
    fam = [r for r in run.rows if r.level == "family"]
    assert fam and all(r.task == "" and r.scope == r.family for r in fam)
    # one primary per task and family: the first declared metric, never a bucket row
    for scope in {(r.level, r.scope) for r in run.rows}:
        primaries = [r for r in run.rows if (r.level, r.scope) == scope and r.primary]
        assert len(primaries) == 1 and not primaries[0].bucket, scope
    assert by["icl_fewshot_curve", "acc"].primary and not by["icl_fewshot_curve", "bpb"].primary


def test_samples_store_metrics_and_tags_as_separate_structs() -> None:
    raw = pd.read_parquet(GOLDEN / "v2" / "samples.parquet")
    assert {"metrics", "tags"} <= set(raw.columns) and "acc" not in raw.columns
    first = raw.iloc[0]
    assert "recall" in first["metrics"] and "length" in first["tags"]
    old = pd.read_parquet(GOLDEN / "v1" / "samples.parquet")
    assert "metrics" not in old.columns and "acc" in old.columns  # the v1 layout, for contrast


def test_run_facts_live_in_the_manifest_not_among_the_scores() -> None:
    run = read_run(GOLDEN / "v2")
    assert not any("skipped" in r.metric or r.metric == "model_window" for r in run.rows)
    assert run.info is not None
    niah = run.info.task("g_niah_single")
    assert niah is not None and niah.model_window == 4096 and niah.skipped_items == 0
    assert niah.notes["skipped_items"] == {"len=8192": 2}  # planned: beyond the window
    assert read_info(GOLDEN / "v1").task("g_niah_single") == niah


def test_dtype_and_token_budget_have_one_meaning_each() -> None:
    hf = backend_facts("hf", {"dtype": "bfloat16"}, 16384, "auto")
    assert hf == {"dtype_requested": "auto", "dtype_resolved": "bfloat16",
                  "batch_token_budget": 16384, "wave_tokens": None}  # fmt: skip
    vllm = backend_facts("vllm", {"dtype": "auto"}, 1 << 20, "auto")
    assert vllm == {"dtype_requested": "auto", "dtype_resolved": None,
                    "batch_token_budget": None, "wave_tokens": 1 << 20}  # fmt: skip
    v2 = read_info(GOLDEN / "v2")
    assert (v2.dtype_requested, v2.batch_token_budget) == ("auto", 8192)
    v1 = read_manifest(GOLDEN / "v1")  # v1's `dtype` is split by what the backend meant
    assert "dtype" not in v1 and v1["migrated_from"] == 1


def test_an_unknown_schema_version_is_refused_in_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "v2", run)
    read_run(run)  # positive control
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(manifest | {"schema_version": 99}))
    with pytest.raises(EvalkitError, match="schema version 99; this evalkit reads versions 1"):
        read_run(run)


def test_score_rows_round_trip_and_damage_is_one_line() -> None:
    rows = [
        ScoreRow("t", "f", "acc", 0.5, 0.4, 0.6, 10, True, "wilson", primary=True),
        ScoreRow(
            "t",
            "f",
            "acc",
            0.7,
            0.5,
            0.8,
            5,
            True,
            bucket=(("k", 4), ("lang", "fr"), ("x", 0.5), ("ok", True)),
            label="acc[k=4]",
        ),
        ScoreRow("", "g", "acc,none", 0.6, 0.5, 0.7, 15, True, level="group", group="grp"),
    ]
    frame = scores_table(rows)
    assert rows_from_table(frame, "here") == tuple(rows)
    bad = frame.assign(bucket=["[1]", "{}", "{}"])
    with pytest.raises(EvalkitError, match="damaged run directory here"):
        rows_from_table(bad, "here")
    with pytest.raises(EvalkitError, match="lacks"):
        rows_from_table(frame.drop(columns=["level"]), "here")


@pytest.mark.parametrize(
    ("label", "metric", "bucket"),
    [
        ("acc", "acc", ()),
        ("acc,none", "acc,none", ()),
        ("acc[k=4]", "acc", (("k", 4),)),
        ("recall[len=1024,depth=50]", "recall", (("length", 1024), ("depth", 50))),
        ("acc[fr]", "acc", (("language", "fr"),)),
        ("bpb_gap_en[zh_Hans]", "bpb_gap_en", (("language", "zh_Hans"),)),
        ("acc[gold]", "acc", (("condition", "gold"),)),
        ("acc[pct_25]", "acc", (("condition", "pct_25"),)),
        ("effective_length[recall>=0.5]", "effective_length", (("threshold", 0.5),)),
        ("weird[a[b]]", "weird[a[b]]", ()),
    ],
)
def test_v1_names_are_decoded_once_by_the_migration(
    label: str, metric: str, bucket: tuple[tuple[str, object], ...]
) -> None:
    assert split_v1_metric(label) == (metric, bucket)
