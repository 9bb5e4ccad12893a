"""lm-eval groups aggregate in evalkit as lm-eval aggregates them.

Local lm-eval YAML (JSON data written here) defines four leaf tasks of different sizes and
three groups: `g_inner` (size-weighted acc of two tasks: the issue's 30 and 40 items at acc 0.0
and 0.3), `g_outer` (nests `g_inner` beside a third task; unweighted acc and size-weighted
acc_norm), and `g_filt` (two generation tasks with two filters each: one entry with an explicit
filter list, one that discovers them). One scripted model answers both harnesses the same way:
lm-eval's own `simple_evaluate` on a scripted `LM`, and `evalkit.score` on the fake backend.
Every group number lm-eval reports must be evalkit's group row, and evalkit's interval must be
as wide as lm-eval's stderr says it should be.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from display import DisplayRow as Score
from display import display_rows

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.errors import EvalkitError
from evalkit.schema import AGGREGATE_DISPLAY_PREFIX as FAMILY_PREFIX

SIZES = {"g_t1": (30, 0), "g_t2": (40, 12), "g_t3": (20, 15)}  # docs, docs whose gold is "A"
GEN_SIZES = {"g_gen1": 10, "g_gen2": 7}
MC_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_text: "Question {{{{id}}}}:"
doc_to_choice: ["A", "B"]
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
GEN_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: generate_until
doc_to_text: "Item {{{{id}}}} says {{{{answer}}}}:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 16
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "^(\\\\d+)$"
      - function: take_first
  - name: loose
    filter:
      - function: regex
        regex_pattern: "(\\\\d+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
GROUPS = {
    "g_inner": """group: g_inner
task: [g_t1, g_t2]
aggregate_metric_list:
  - metric: acc
    aggregation: mean
    weight_by_size: true
""",
    "g_outer": """group: g_outer
task: [g_inner, g_t3]
aggregate_metric_list:
  - metric: acc
    weight_by_size: false
  - metric: acc_norm
    weight_by_size: true
""",
    "g_filt": """group: g_filt
task: [g_gen1, g_gen2]
aggregate_metric_list:
  - metric: exact_match
    filter_list: [loose]
    weight_by_size: true
  - metric: exact_match
    weight_by_size: false
""",
}


def score_fn(context: str, continuation: str) -> float:
    return -1.0 if continuation.strip() == "A" else -2.5


def generate_fn(prompt: str, sample: int = 0) -> str:
    m = re.search(r"Item (\d+) says (\d+):$", prompt)
    assert m is not None, prompt
    i, answer = int(m.group(1)), m.group(2)
    return [answer, f"so {answer}", "nothing", f"{answer}0"][i % 4]


def write_tasks(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cache = json.dumps(str(root / "hf-cache"))
    for name, (n, gold_a) in SIZES.items():
        data = root / f"{name}.jsonl"
        docs = [{"id": i, "gold": 0 if i < gold_a else 1} for i in range(n)]
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (root / f"{name}.yaml").write_text(
            MC_YAML.format(name=name, data=json.dumps(str(data)), cache=cache)
        )
    for name, n in GEN_SIZES.items():
        data = root / f"{name}.jsonl"
        docs = [{"id": i, "answer": str(10 + i)} for i in range(n)]
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (root / f"{name}.yaml").write_text(
            GEN_YAML.format(name=name, data=json.dumps(str(data)), cache=cache)
        )
    for name, text in GROUPS.items():
        (root / f"{name}.yaml").write_text(text)
    return root


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("groups") / "tasks")


@pytest.fixture(scope="module")
def lmeval_files(tasks_dir: Path) -> Path:
    """lm-eval's own results and samples files for the scripted model, written by its
    EvaluationTracker as `lm-eval --output_path DIR --log_samples` writes them."""
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    class Scripted(LM):  # type: ignore[misc]
        def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            return [(score_fn(*r.args), False) for r in requests]

        def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            raise AssertionError("not used")

        def generate_until(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            return [generate_fn(r.args[0]) for r in requests]

    out = simple_evaluate(
        model=Scripted(),
        tasks=["g_outer", "g_filt"],
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
        log_samples=True,
    )
    assert out is not None
    samples = out.pop("samples")
    where = tasks_dir.parent / "lmeval-out"
    tracker = EvaluationTracker(output_path=str(where))
    tracker.general_config_tracker.model_name_sanitized = "scripted"
    tracker.save_results_aggregated(results=dict(out), samples=samples)
    for task, rows in samples.items():
        tracker.save_results_samples(task_name=task, samples=rows)
    return where


@pytest.fixture(scope="module")
def lmeval_results(lmeval_files: Path) -> dict[str, Any]:
    return dict(_read_lmeval(lmeval_files)[0]["results"])


@pytest.fixture(scope="module")
def evalkit_run(tasks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = evalkit.score(
        "unused",
        tasks=["g_outer", "g_filt"],
        tasks_dir=tasks_dir,
        backend=FakeBackend(score_fn, generate_fn),
        use_cache=False,
        progress=False,
        out=tmp_path_factory.mktemp("run") / "run",
    )
    return run.path


@pytest.fixture(scope="module")
def evalkit_rows(evalkit_run: Path) -> list[Score]:
    from evalkit.store import read_run

    return display_rows(read_run(evalkit_run).rows)


def _row(rows: list[Score], group: str, metric: str) -> Score:
    found = [r for r in rows if r.task == FAMILY_PREFIX + group and r.metric == metric]
    assert len(found) == 1, (group, metric, [(r.task, r.metric) for r in rows])
    return found[0]


def _evalkit_metric(key: str) -> str:
    metric, filt = key.split(",")
    return metric if filt == "none" else key


def test_the_issues_example_is_size_weighted(evalkit_rows: list[Score]) -> None:
    row = _row(evalkit_rows, "g_inner", "acc")
    assert row.value == pytest.approx(12 / 70)  # not (0.0 + 0.3) / 2
    assert row.n == 70


def test_every_group_number_lm_eval_reports_is_evalkits(
    lmeval_results: dict[str, Any], evalkit_rows: list[Score]
) -> None:
    checked = 0
    for group in GROUPS:
        theirs = lmeval_results[group]
        for key, value in theirs.items():
            if "," not in key or "_stderr" in key:
                continue
            row = _row(evalkit_rows, group, _evalkit_metric(key))
            assert row.value == pytest.approx(value, abs=1e-12), (group, key)
            checked += 1
    # g_inner acc; g_outer acc, acc_norm; g_filt exact_match under loose and strict.
    assert checked == 5
    # And evalkit has no group row lm-eval does not have.
    mine = {(r.task, r.metric) for r in evalkit_rows if r.task.startswith(FAMILY_PREFIX)}
    assert len(mine) == checked


def test_the_interval_matches_lm_evals_stderr(
    lmeval_results: dict[str, Any], evalkit_rows: list[Score]
) -> None:
    for group in GROUPS:
        for key, stderr in lmeval_results[group].items():
            if "_stderr," not in key:
                continue
            metric = _evalkit_metric(key.replace("_stderr", ""))
            row = _row(evalkit_rows, group, metric)
            half = (row.ci_high - row.ci_low) / 2
            assert row.ci_low <= row.value <= row.ci_high
            assert half == pytest.approx(1.96 * float(stderr), rel=0.3), (group, key)


def test_task_rows_are_untouched(lmeval_results: dict[str, Any], evalkit_rows: list[Score]) -> None:
    for name in [*SIZES, *GEN_SIZES]:
        for key, value in lmeval_results[name].items():
            if "," not in key or "_stderr" in key:
                continue
            metric = key if name in GEN_SIZES else _evalkit_metric(key)
            found = [r for r in evalkit_rows if r.task == name and r.metric == metric]
            assert found and found[0].value == pytest.approx(value), (name, key)


# -- evalkit export --format lmeval -------------------------------------------------------------


def _read_lmeval(root: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Results and samples found and read the way lm-eval finds and reads its own files
    (`lm_eval.utils` file-name helpers; samples through `datasets`' json loader)."""
    from datasets import load_dataset
    from lm_eval.utils import (
        get_file_task_name,
        get_latest_filename,
        get_results_filenames,
        get_sample_results_filenames,
    )

    files = [str(p) for p in root.rglob("*") if p.is_file()]
    results = json.loads(Path(get_latest_filename(get_results_filenames(files))).read_text())
    samples = {}
    for f in get_sample_results_filenames(files):
        name = get_file_task_name(Path(f).name)
        rows = load_dataset("json", data_files=f, split="train", cache_dir=str(root / ".hf"))
        samples[name] = list(rows)
    return results, samples


@pytest.fixture(scope="module")
def exported(evalkit_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from evalkit.cli import app

    out = tmp_path_factory.mktemp("export")
    res = CliRunner().invoke(
        app, ["export", str(evalkit_run), "--format", "lmeval", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    return out


def test_export_numbers_are_lm_evals(lmeval_files: Path, exported: Path) -> None:
    theirs, _ = _read_lmeval(lmeval_files)
    mine, _ = _read_lmeval(exported)
    assert set(mine["results"]) == set(theirs["results"])
    assert set(mine["groups"]) == set(theirs["groups"])
    for section in ("results", "groups"):
        for name, want in theirs[section].items():
            got = mine[section][name]
            for key, value in want.items():
                if key in ("alias", "name"):
                    assert got[key] == value
                elif isinstance(value, float):
                    assert got[key] == pytest.approx(value, abs=1e-12), (name, key)
                else:
                    assert got[key] == value, (name, key)
            extra = set(got) - set(want)
            assert not extra, (name, extra)
    for key in ("n-samples", "n-shot", "group_subtasks", "higher_is_better"):
        assert mine[key] == theirs[key], key
    assert set(mine["versions"]) == set(theirs["versions"])


def test_export_keys_follow_lm_evals_schema(exported: Path) -> None:
    from lm_eval.result_schema import EvalResults, SampleResult, _EvalConfig

    mine, samples = _read_lmeval(exported)
    assert set(mine) <= set(EvalResults.__annotations__)
    assert set(mine["config"]) <= set(_EvalConfig.__annotations__)
    fixed = set(SampleResult.__annotations__)
    for rows in samples.values():
        for row in rows:
            assert fixed <= set(row)
            assert set(row["metrics"]) <= set(row) - fixed


def test_export_samples_are_lm_evals(lmeval_files: Path, exported: Path) -> None:
    _, theirs = _read_lmeval(lmeval_files)
    _, mine = _read_lmeval(exported)
    assert set(mine) == set(theirs)
    for task, rows in theirs.items():
        got = {(r["doc_id"], r["filter"]): r for r in mine[task]}
        assert len(got) == len(rows)
        for want in rows:
            row = got[want["doc_id"], want["filter"]]
            assert row["metrics"] == want["metrics"]
            for m in want["metrics"]:
                assert row[m] == pytest.approx(want[m]), (task, want["doc_id"], m)
            if task in GEN_SIZES:  # evalkit keeps the first filter's answer only
                first = want["filter"] == "strict"
                assert row["filtered_resps"] == (want["filtered_resps"] if first else ["N/A"])
            else:  # per-choice [log-likelihood, is_greedy]; evalkit keeps no greedy flags
                assert [x[0] for x in row["filtered_resps"]] == [
                    x[0] for x in want["filtered_resps"]
                ]


def test_export_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    from evalkit.export import export

    with pytest.raises(EvalkitError, match="not a complete evalkit run"):
        export(tmp_path, tmp_path / "out")


def test_export_of_a_native_run(tmp_path: Path) -> None:
    """Native tasks export too: `METRIC,none` with lm-eval's stderr of the per-item values."""
    from evalkit.export import export, mean_stderr
    from evalkit.store import read_run

    run = evalkit.score(
        "unused",
        tasks=["smoke_arith_mc"],
        limit=25,
        backend=FakeBackend(),
        use_cache=False,
        progress=False,
        out=tmp_path / "run",
    )
    export(run.path, tmp_path / "out")
    results, samples = _read_lmeval(tmp_path / "out")
    row = results["results"]["smoke_arith_mc"]
    values = [float(v) for v in read_run(run.path).samples["acc"]]
    assert row["acc,none"] == pytest.approx(sum(values) / len(values))
    assert row["acc_stderr,none"] == pytest.approx(mean_stderr(values))
    assert row["sample_len"] == 25 and results["n-samples"]["smoke_arith_mc"]["effective"] == 25
    assert len(samples["smoke_arith_mc"]) == 25
    assert {r["filter"] for r in samples["smoke_arith_mc"]} == {"none"}
    with pytest.raises(EvalkitError, match="already exists"):
        export(run.path, tmp_path / "out")
    with pytest.raises(EvalkitError, match="unknown export format"):
        export(run.path, tmp_path / "o2", fmt="helm")
