"""`evalkit report`: one run of the bundled checkpoint and a set of runs (trajectory, deltas).

Every plot the report links is a decodable PNG; every table the report holds parses back out of
report.md with the same shape; sections whose data is absent say so instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from report_checks import assert_png, markdown_images, markdown_tables
from typer.testing import CliRunner

import evalkit
from evalkit.cli import app
from evalkit.report import sections as S
from evalkit.report.blocks import Section, Text
from evalkit.report.build import ReportFiles, write_report
from evalkit.store import read_run, write_run

ROOT = Path(__file__).resolve().parents[1]
TINY_CHAT = ROOT / "examples" / "checkpoints" / "tiny-chat"
# A few transfer tasks that exercise every single-run section the bundled checkpoint can fill:
# families, continuous metrics, few-shot curve with seeds, label conditions, languages.
SINGLE_TASKS = [
    "reasoning_arith_mc",
    "multilingual_number_words_mc",
    "icl_fewshot_curve",
    "icl_label_probe",
    "icl_flipped_labels",
]


def check_report(files: ReportFiles) -> str:
    md = files.markdown.read_text(encoding="utf-8")
    # Every figure: a PNG inside the report folder, linked from the markdown, embedded in HTML.
    assert files.plots, "no plots"
    for p in files.plots:
        assert_png(p)
        assert p.parent == files.out / "plots"
    links = markdown_images(md)
    assert sorted(links) == sorted(p.relative_to(files.out).as_posix() for p in files.plots)
    html = files.index.read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(files.plots)
    assert "http://" not in html and "https://" not in html  # nothing to fetch
    # Every table renders: the parser finds each one, with its header and all its rows.
    expected = [t for s in files.sections for t in s.tables]
    parsed = markdown_tables(md)
    assert len(parsed) == len(expected) > 0
    for (header, body), t in zip(parsed, expected, strict=True):
        assert len(header) == len(t.header)
        assert len(body) == len(t.rows)
        assert all(len(r) == len(t.header) for r in body)
    return md


def section(files: ReportFiles, id: str) -> Section:
    return next(s for s in files.sections if s.id == id)


@pytest.fixture(scope="module")
def single(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    tmp = tmp_path_factory.mktemp("report-single")
    run = evalkit.score(
        tiny_base,
        tasks=SINGLE_TASKS,
        limit=64,  # still every k, seed, label condition and language: items cycle through them
        out=tmp / "run",
        cache_dir=tmp / "cache",
        progress=False,
        device="cpu",
    )
    files: ReportFiles = evalkit.make_report(run.path, out=tmp / "report")
    return files


def test_single_run_report_has_every_section_it_has_data_for(single: ReportFiles) -> None:
    md = check_report(single)
    filled = {s.id for s in single.sections if s.note is None}
    assert filled == {"run", "families", "tasks", "icl", "multilingual"}
    for sid in ("long-context", "code", "trajectories", "deltas", "attribution"):
        assert section(single, sid).note, sid
    names = {p.name for p in single.plots}
    assert {
        "families_acc.png",
        "icl_fewshot_icl_fewshot_curve_acc.png",
        "icl_labels.png",
        "multilingual_languages.png",
        "multilingual_gaps.png",
    } <= names
    # Header: model, provenance, suite/backend/hardware/time/version from the manifest.
    header = dict((r[0], r[1]) for r in section(single, "run").tables[0].rows)
    assert header["model"] == "tiny-base"
    assert "step 1500" in header["provenance"] and "arithmetic 35%" in header["provenance"]
    assert header["backend"].startswith("hf (float32")
    assert header["evalkit"].startswith(evalkit.__version__)
    # The few-shot table lists every k the task scored, and the label table every condition.
    icl_tables = section(single, "icl").tables
    assert [r[0] for r in icl_tables[0].rows] == ["0", "1", "2", "4", "8", "16", "32"]
    conds = [r[0] for r in icl_tables[1].rows]
    assert conds[:3] == ["zero_shot", "gold", "random"] and "flip_100" in conds
    # Per-language rows with English first, and its gap cell empty.
    lang_rows = section(single, "multilingual").tables[0].rows
    assert lang_rows[0][0] == "en" and lang_rows[0][-1] == "–"
    assert len(lang_rows) == 8
    # The per-task table carries the continuous metrics beside the primary one.
    assert "p_correct ↑ [95% CI]" in md and "bpb ↓ [95% CI]" in md


@pytest.fixture(scope="module")
def several(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    tmp = tmp_path_factory.mktemp("report-several")
    paths = [
        evalkit.score(
            ckpt,
            suite="smoke",
            limit=40,
            out=tmp / "runs" / name,
            cache_dir=tmp / "cache",
            progress=False,
            device="cpu",
        ).path
        for name, ckpt in (("base", tiny_base), ("chat", TINY_CHAT))
    ]
    files: ReportFiles = evalkit.make_report(*paths, out=tmp / "report", resamples=300)
    return files


def test_several_runs_add_trajectories_and_a_forest_plot(several: ReportFiles) -> None:
    check_report(several)
    traj = section(several, "trajectories")
    assert traj.note is None and traj.figures
    # x is tokens seen from the provenance: the chat model's 0.41M tuning tokens sort first.
    table = traj.tables[0]
    assert table.header[1] == "training tokens seen"
    assert [r[0] for r in table.rows] == ["`chat`", "`base`"]
    deltas = section(several, "deltas")
    assert deltas.note is None and len(deltas.figures) == 1
    rows = {r[0]: r for r in deltas.tables[0].rows}
    # Chat tuning lost the bare arithmetic format of the base model: a significant drop.
    assert rows["smoke_arith_mc"][-1] == "worse"
    assert float(rows["smoke_arith_mc"][4]) < 0


def test_report_reuses_its_folder_without_stale_plots(tmp_path: Path, several: ReportFiles) -> None:
    runs = [read_run(p) for p in sorted((several.out.parent / "runs").iterdir())]
    out = tmp_path / "r"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "stale.png").write_bytes(b"old")
    files = write_report(runs[:1], out)
    assert not (out / "plots" / "stale.png").exists()
    assert {p.name for p in (out / "plots").iterdir()} == {p.name for p in files.plots}


# -- sections that the bundled checkpoint cannot fill: long context, code ---------------------


def _synthetic_run(path: Path, scores: list[dict[str, Any]], samples: pd.DataFrame) -> Path:
    manifest = {"schema_version": 1, "checkpoint": "/ckpts/x", "suite": "synthetic"}
    return write_run(path, manifest, samples, pd.DataFrame(scores))


def _score(task: str, family: str, metric: str, value: float, hib: bool = True) -> dict[str, Any]:
    return {
        "task": task,
        "family": family,
        "metric": metric,
        "value": value,
        "ci_low": value - 0.05,
        "ci_high": value + 0.05,
        "n": 40,
        "higher_is_better": hib,
    }


def test_long_context_and_code_sections_render_when_present(tmp_path: Path) -> None:
    scores = [_score("niah_single", "long_context", "acc", 0.7)]
    grid = {}
    for depth in (0.0, 0.5, 1.0):
        for length in (256, 1024, 4096):
            v = 1.0 if length <= 1024 else 0.4 + 0.2 * depth
            grid[(depth, length)] = v
            scores.append(
                _score("niah_single", "long_context", f"acc[depth={depth},length={length}]", v)
            )
    scores.append(_score("niah_single", "long_context", "effective_length[recall>=0.85]", 1024.0))
    for k, v in ((1, 0.2), (5, 0.45), (10, 0.6)):
        scores.append(_score("code_add", "code", f"pass@{k}", v))
        scores.append(_score("code_mul", "code", f"pass@k[k={k}]", v / 2))
    samples = pd.DataFrame(
        {"task": ["niah_single", "code_add"], "doc_id": [0, 1], "acc": [1.0, None]}
    )
    run = read_run(_synthetic_run(tmp_path / "run", scores, samples))
    files = write_report([run], tmp_path / "report")
    check_report(files)
    lc = section(files, "long-context")
    assert lc.note is None and [f.path.name for f in lc.figures] == ["long_context_niah_single.png"]
    assert lc.tables[0].rows == (
        ("niah_single", "effective_length[recall>=0.85]", "1.02e+03 [1.02e+03, 1.02e+03]"),
    )
    code = section(files, "code")
    assert code.note is None and code.tables[0].header[1:4] == (
        "pass@1 [95% CI]",
        "pass@5 [95% CI]",
        "pass@10 [95% CI]",
    )
    assert [r[0] for r in code.tables[0].rows] == ["code_add", "code_mul"]
    assert code.tables[0].rows[0][1].startswith("0.2 [")
    assert code.tables[0].rows[1][3].startswith("0.3 [")
    assert section(files, "icl").note  # pass@k[k=N] is not a few-shot curve


def test_long_context_grid_from_item_tags(tmp_path: Path) -> None:
    """Without per-cell score rows, the grid is the mean of the items' metric per tag cell."""
    samples = pd.DataFrame(
        {
            "task": ["niah"] * 4,
            "doc_id": [0, 1, 2, 3],
            "acc": [1.0, 0.0, 1.0, 1.0],
            "depth": [0.0, 0.0, 1.0, 1.0],
            "length": [128, 512, 128, 512],
        }
    )
    run = read_run(_synthetic_run(tmp_path / "run", [_score("niah", "lc", "acc", 0.75)], samples))
    ctx = S.ReportContext((run,), ("x",), tmp_path / "plots", S.ReportOptions())
    assert S._grid_from_samples(run, "niah", "acc") == {
        (0.0, 128.0): 1.0,
        (0.0, 512.0): 0.0,
        (1.0, 128.0): 1.0,
        (1.0, 512.0): 1.0,
    }
    sec = S.long_context(ctx)
    assert sec.note is None and len(sec.figures) == 1
    assert_png(sec.figures[0].path)


def test_units_follow_the_metric_field() -> None:
    # Names are no longer split here: v1 names are decoded once by evalkit.migrate
    # (tests/test_schema.py), and sections read the rows' metric and bucket fields.
    assert S.unit("acc") == "acc (fraction of items)"
    assert S.unit("acc_gap_en") == "acc_gap_en (fraction of items)"
    assert S.unit("slope_log2k") == "slope_log2k"


# -- CLI ------------------------------------------------------------------------------------


def test_cli_report(several: ReportFiles, tmp_path: Path) -> None:
    run_dir = sorted((several.out.parent / "runs").iterdir())[0]
    res = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert f"report written to {tmp_path / 'r' / 'index.html'}" in res.output
    assert (tmp_path / "r" / "report.md").is_file()


def test_cli_report_bad_input_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error:") and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_long_context_shows_the_last_run_with_needle_results(tmp_path: Path) -> None:
    # the demo's order: a run with needles, then a run without: the section shows the former
    # and names it; with the needle run last, it is the focus and no name is needed
    needles = [_score("niah_single", "long_context", "recall", 0.5)]
    for length in (256, 512):
        needles.append(
            _score("niah_single", "long_context", f"recall[depth=0,length={length}]", 0.5)
        )
    needles.append(_score("niah_single", "long_context", "effective_length[recall>=0.85]", 0.0))
    plain = [_score("arith", "reasoning", "acc", 0.9)]
    with_needles = _synthetic_run(
        tmp_path / "needles", needles, pd.DataFrame({"task": ["niah_single"], "doc_id": [0]})
    )
    without = _synthetic_run(
        tmp_path / "plain", plain, pd.DataFrame({"task": ["arith"], "doc_id": [0]})
    )
    files = write_report([read_run(with_needles), read_run(without)], tmp_path / "report")
    lc = section(files, "long-context")
    assert lc.note is None and [f.path.name for f in lc.figures] == ["long_context_niah_single.png"]
    files = write_report([read_run(without)], tmp_path / "alone")
    assert section(files, "long-context").note  # no needle run at all: the section says so


def test_every_single_run_section_shows_the_last_run_with_its_results(tmp_path: Path) -> None:
    # The rule is the sections', not long context's alone: code and languages follow it, each
    # on its own, while the task table shows the last run (which has task scores).
    mixed = [_score("code_add", "code", f"pass@{k}", v) for k, v in ((1, 0.2), (5, 0.5))]
    for metric, lang, v in (("acc", "en", 0.8), ("acc", "fr", 0.6), ("acc_gap_en", "fr", -0.2)):
        mixed.append(_score("words", "multilingual", f"{metric}[{lang}]", v))
    samples = pd.DataFrame({"task": ["code_add", "words"], "doc_id": [0, 1]})
    with_results = read_run(_synthetic_run(tmp_path / "mixed", mixed, samples))
    plain = read_run(
        _synthetic_run(
            tmp_path / "plain",
            [_score("arith", "reasoning", "acc", 0.9)],
            pd.DataFrame({"task": ["arith"], "doc_id": [0]}),
        )
    )
    files = write_report([with_results, plain], tmp_path / "report")
    check_report(files)
    for id, figure in (("code", "code_pass_at_k.png"), ("multilingual", "multilingual_gaps.png")):
        s = section(files, id)
        assert s.note is None and figure in [f.path.name for f in s.figures], id
        first = s.blocks[0]
        assert isinstance(first, Text) and first.text.startswith("Run `mixed` (the last run"), id
    tasks = section(files, "tasks")
    assert [r[0] for r in tasks.tables[0].rows] == ["arith"]
    assert [b.text for b in tasks.blocks if isinstance(b, Text)] == ["Run `plain`."]
    # the run with results last: it is the focus, and nothing needs naming
    files = write_report([plain, with_results], tmp_path / "focus")
    for id in ("code", "multilingual"):
        assert not any(isinstance(b, Text) for b in section(files, id).blocks), id
    # no run has them: the sections say so
    files = write_report([plain], tmp_path / "alone")
    assert section(files, "code").note and section(files, "multilingual").note


def test_run_facts_read_the_same_for_the_report_and_the_console() -> None:
    from rich.console import Console

    from evalkit.report.blocks import Table
    from evalkit.report.console import print_run_facts
    from evalkit.report.runfacts import run_fact_blocks

    m = {
        "skipped_tasks": [{"task": "niah", "family": "longctx", "reason": "no length can run"}],
        "tasks": [{"name": "fewshot", "notes": {"skipped_items": {"k=32": 3}}}, {"name": "x"}],
        "vocabulary": {"embedding_rows": 320, "tokenizer_tokens": 300, "padded_rows": 20},
    }
    blocks = run_fact_blocks([m], ["a"])
    tables = [b for b in blocks if isinstance(b, Table)]
    assert [t.rows for t in tables] == [
        (("`a`", "niah", "longctx", "no length can run"),),
        (("`a`", "fewshot", "k=32", "3"),),
    ]
    assert [b.text for b in blocks if isinstance(b, Text)] == [
        "`a`: the embedding has 320 rows and the tokenizer 300 tokens; the 20 extra rows share "
        "the softmax (scored as lm-eval does)."
    ]
    console = Console(record=True, width=400)
    print_run_facts(m, console)
    out = console.export_text()
    assert "skipped task niah (longctx): no length can run" in out
    assert "fewshot: 3 item(s) left out at k=32" in out
    assert "the embedding has 320 rows, the tokenizer 300 tokens (20 rows never produced" in out
    # negative control: a manifest without facts says nothing, in either
    assert run_fact_blocks([{"tasks": [{"name": "x"}]}], ["a"]) == []
    quiet = Console(record=True, width=400)
    print_run_facts({}, quiet)
    assert quiet.export_text() == ""
