"""The lm-eval adapter without a model: loading, items, metric specs, hashes, scoring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import EvalkitError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    RollingLoglikelihood,
    RollingResult,
)
from evalkit.tasks.lmeval import FEWSHOT_SEED, LMEvalTask
from evalkit.tasks.lmeval_convert import generate_request, lm_resps
from evalkit.tasks.lmeval_load import load_lmeval_tasks

TASKS_DIR = Path(__file__).resolve().parent / "data" / "lmeval_tasks"
ARITH = [json.loads(line) for line in (TASKS_DIR / "arith.jsonl").read_text().splitlines()]
PROSE = [json.loads(line) for line in (TASKS_DIR / "prose.jsonl").read_text().splitlines()]
ALL = ["evalkit_arith_mc", "evalkit_arith_gen", "evalkit_arith_ll", "evalkit_prose_rolling"]


@pytest.fixture(scope="module")
def tasks() -> dict[str, LMEvalTask]:
    return {t.name: t for t in load_lmeval_tasks(ALL, TASKS_DIR)}


def _json_task_dir(root: Path, docs: list[dict[str, Any]], name: str = "tmp_arith_ll") -> Path:
    """A user-style lm-eval YAML over a JSONL file via `dataset_path: json`, with the absolute
    data path written in (datasets resolves relative `data_files` against the CWD)."""
    root.mkdir(parents=True, exist_ok=True)
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files: {{test: {json.dumps(str(data))}}}\n"
        f"  cache_dir: {json.dumps(str(root / 'hf-cache'))}\n"
        "test_split: test\n"
        "output_type: loglikelihood\n"
        'doc_to_text: "{{a}} + {{b}} ="\n'
        'doc_to_target: " {{sum}}"\n'
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    return root


# -- loading -----------------------------------------------------------------------------------


def test_unknown_task_is_an_error_naming_it_with_a_hint() -> None:
    with pytest.raises(EvalkitError) as err:
        load_lmeval_tasks(["evalkit_arith_mcq"], TASKS_DIR)
    msg = str(err.value)
    assert "'evalkit_arith_mcq'" in msg and "\n" not in msg
    assert "did you mean 'evalkit_arith_mc'" in msg


def test_malformed_yaml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    _json_task_dir(tmp_path, ARITH[:3])
    bad = tmp_path / "sub" / "broken.yaml"
    bad.parent.mkdir()
    bad.write_text("task: broken\ndoc_to_text: [unclosed\n")
    with pytest.raises(EvalkitError) as err:
        load_lmeval_tasks(["tmp_arith_ll"], tmp_path)
    msg = str(err.value)
    assert str(bad) in msg and "line" in msg and "\n" not in msg


def test_missing_include_is_an_error_naming_the_file(tmp_path: Path) -> None:
    _json_task_dir(tmp_path, ARITH[:3])
    bad = tmp_path / "child.yaml"
    bad.write_text("include: no_such_template.yaml\ntask: child\n")
    with pytest.raises(EvalkitError, match=r"child\.yaml"):
        load_lmeval_tasks(["tmp_arith_ll"], tmp_path)


def test_invalid_task_config_is_an_error_naming_the_task_and_file(tmp_path: Path) -> None:
    root = _json_task_dir(tmp_path, ARITH[:3])
    path = root / "tmp_arith_ll.yaml"
    path.write_text(path.read_text().replace("output_type: loglikelihood", "output_type: bogus"))
    with pytest.raises(EvalkitError) as err:
        load_lmeval_tasks(["tmp_arith_ll"], root)
    msg = str(err.value)
    assert "'tmp_arith_ll'" in msg and str(path) in msg and "\n" not in msg


def test_duplicate_task_names_in_a_directory_are_an_error(tmp_path: Path) -> None:
    root = _json_task_dir(tmp_path, ARITH[:3])
    (root / "again.yaml").write_text((root / "tmp_arith_ll.yaml").read_text())
    with pytest.raises(EvalkitError, match="duplicate lm-eval task name 'tmp_arith_ll'"):
        load_lmeval_tasks(["tmp_arith_ll"], root)


def test_missing_tasks_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EvalkitError, match="tasks directory not found"):
        load_lmeval_tasks(["evalkit_arith_mc"], tmp_path / "nope")


def test_groups_and_tags_expand_to_their_tasks() -> None:
    group = load_lmeval_tasks(["evalkit_arith"], TASKS_DIR)
    assert [t.name for t in group] == ["evalkit_arith_mc", "evalkit_arith_gen", "evalkit_arith_ll"]
    assert {t.family for t in group} == {"evalkit_arith"}
    tag = load_lmeval_tasks(["evalkit_lmeval_tests"], TASKS_DIR)
    assert sorted(t.name for t in tag) == sorted(ALL)
    single = load_lmeval_tasks(["evalkit_arith_ll"], TASKS_DIR)
    assert [(t.name, t.family, t.source) for t in single] == [
        ("evalkit_arith_ll", "lm-eval", "lm-eval")
    ]
    with pytest.raises(EvalkitError, match="requested twice"):
        load_lmeval_tasks(["evalkit_arith", "evalkit_arith_mc"], TASKS_DIR)


def test_importing_the_adapter_does_not_import_lm_eval() -> None:
    code = (
        "import sys, evalkit.tasks.lmeval_load, evalkit.tasks.registry; "
        "assert 'lm_eval' not in sys.modules, 'lm_eval imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- items -------------------------------------------------------------------------------------


def test_identity_and_versions(tasks: dict[str, LMEvalTask]) -> None:
    assert tasks["evalkit_arith_mc"].version == "1.0"
    assert tasks["evalkit_arith_gen"].version == "2.0"
    assert {t.source for t in tasks.values()} == {"lm-eval"}
    assert {t.output_type for t in tasks.values()} == {
        "multiple_choice",
        "generate_until",
        "loglikelihood",
        "loglikelihood_rolling",
    }


def test_limit_takes_the_first_docs(tasks: dict[str, LMEvalTask]) -> None:
    t = tasks["evalkit_arith_mc"]
    assert [it.doc_id for it in t.items(5)] == [0, 1, 2, 3, 4]
    assert len(t.items()) == len(ARITH) == len(t.items(10_000))
    assert t.items(0) == []
    # Few-shot contexts depend on the document, not on the limit.
    assert t.items(5) == t.items()[:5]


def test_items_are_lmevals_docs_and_requests(tasks: dict[str, LMEvalTask]) -> None:
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    for name, t in tasks.items():
        ref = manager.load([name])["tasks"][name]
        ref.set_fewshot_seed(seed=FEWSHOT_SEED)
        ref.build_all_requests(limit=None)
        by_doc: dict[int, list[Any]] = {}
        for inst in ref.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        items = t.items()
        assert [it.doc_id for it in items] == sorted(by_doc)
        for it in items:
            insts = sorted(by_doc[it.doc_id], key=lambda x: x.idx)
            assert it.prompt == insts[0].args[0]
            assert [r.kind for r in it.requests] == [
                {"loglikelihood": "loglikelihood", "loglikelihood_rolling": "rolling"}.get(
                    i.request_type, "generate"
                )
                for i in insts
            ]


def test_requests_per_output_type(tasks: dict[str, LMEvalTask]) -> None:
    doc = ARITH[0]
    mc = tasks["evalkit_arith_mc"].items(1)[0]
    assert mc.prompt.endswith(f"\n{doc['a']} + {doc['b']} =")
    assert mc.prompt.count("\n") == 3  # 3-shot, "\n"-delimited
    assert mc.requests == tuple(Loglikelihood(mc.prompt, " " + c) for c in doc["choices"])
    assert mc.target == str(doc["sum"])  # the gold choice's text, not its index

    gen = tasks["evalkit_arith_gen"].items(1)[0]
    assert gen.requests == (Generate(gen.prompt, stop=("\n",), max_tokens=8, temperature=0.0),)
    assert gen.target == str(doc["sum"])

    ll = tasks["evalkit_arith_ll"].items(1)[0]
    assert ll.requests == (Loglikelihood(f"{doc['a']} + {doc['b']} =", f" {doc['sum']}"),)
    assert ll.target == f" {doc['sum']}"

    roll = tasks["evalkit_prose_rolling"].items(1)[0]
    assert roll.requests == (RollingLoglikelihood(PROSE[0]["text"]),)
    assert roll.prompt == roll.target == PROSE[0]["text"]
    assert all(it.tags == () for it in (mc, gen, ll, roll))


# -- metric specs and hashes --------------------------------------------------------------------


def test_metric_specs(tasks: dict[str, LMEvalTask]) -> None:
    from lm_eval.api.metrics import bits_per_byte, mean, perplexity, weighted_perplexity

    def specs(name: str) -> list[tuple[str, bool, bool]]:
        return [(m.name, m.higher_is_better, m.is_mean) for m in tasks[name].metrics]

    assert specs("evalkit_arith_mc") == [("acc", True, True), ("acc_norm", True, True)]
    assert specs("evalkit_arith_gen") == [
        ("exact_match,strict-match", True, True),
        ("exact_match,flexible-extract", True, True),
    ]
    assert specs("evalkit_arith_ll") == [("acc", True, True), ("perplexity", False, False)]
    assert specs("evalkit_prose_rolling") == [
        ("word_perplexity", False, False),
        ("byte_perplexity", False, False),
        ("bits_per_byte", False, False),
    ]
    # The aggregates are lm-eval's own functions.
    agg = {m.name: m.aggregate for m in tasks["evalkit_arith_ll"].metrics}
    assert agg["acc"]([1.0, 0.0, 0.0, 1.0]) == mean([1.0, 0.0, 0.0, 1.0])
    assert agg["perplexity"]([-1.0, -2.0]) == perplexity([-1.0, -2.0])
    agg = {m.name: m.aggregate for m in tasks["evalkit_prose_rolling"].metrics}
    pairs = [(-10.0, 4.0), (-30.0, 12.0)]
    assert agg["word_perplexity"](pairs) == weighted_perplexity(pairs)
    assert agg["bits_per_byte"](pairs) == bits_per_byte(pairs)


def test_content_hash_is_stable_and_follows_the_docs(tmp_path: Path) -> None:
    def hash_of(root: Path) -> str:
        (t,) = load_lmeval_tasks(["tmp_arith_ll"], root)
        return t.content_hash(t.items())

    docs = ARITH[:6]
    first = hash_of(_json_task_dir(tmp_path / "a", docs))
    assert first == hash_of(_json_task_dir(tmp_path / "b", docs))
    changed = [*docs[:3], {**docs[3], "sum": docs[3]["sum"] + 1}, *docs[4:]]
    assert hash_of(_json_task_dir(tmp_path / "c", changed)) != first
    assert hash_of(_json_task_dir(tmp_path / "d", docs[:5])) != first


# -- scoring -----------------------------------------------------------------------------------


def test_score_multiple_choice(tasks: dict[str, LMEvalTask]) -> None:
    t = tasks["evalkit_arith_mc"]
    items = t.items(4)
    responses = []
    for it in items:
        doc = ARITH[it.doc_id]
        # The gold choice wins on docs 0 and 2; on docs 1 and 3 the first non-gold one does.
        winner = doc["label"] if it.doc_id % 2 == 0 else (doc["label"] + 1) % 4
        responses.append(
            [LoglikelihoodResult(-1.0 if i == winner else -5.0, 1, i == winner) for i in range(4)]
        )
    results = t.score(items, responses)
    assert [r.doc_id for r in results] == [0, 1, 2, 3]
    assert [r.metrics["acc"] for r in results] == [1.0, 0.0, 1.0, 0.0]
    assert set(results[0].metrics) == {"acc", "acc_norm"}
    assert results[0].loglikelihoods == tuple(r.logprob for r in responses[0])
    for r, it in zip(results, items, strict=True):
        doc = ARITH[it.doc_id]
        winner = doc["label"] if it.doc_id % 2 == 0 else (doc["label"] + 1) % 4
        assert r.prediction == doc["choices"][winner]
        assert r.target == str(doc["sum"])


def test_score_generation_runs_each_filter(tasks: dict[str, LMEvalTask]) -> None:
    t = tasks["evalkit_arith_gen"]
    items = t.items(4)
    texts = [
        f" {ARITH[0]['sum']}",
        f" x{ARITH[1]['sum']}",
        " 999",
        f"{ARITH[3]['sum']} ",
    ]
    results = t.score(items, [[GenerateResult((s,))] for s in texts])
    strict = [r.metrics["exact_match,strict-match"] for r in results]
    flexible = [r.metrics["exact_match,flexible-extract"] for r in results]
    assert strict == [1.0, 0.0, 0.0, 1.0]
    assert flexible == [1.0, 1.0, 0.0, 1.0]
    # The prediction is the first filter's output.
    assert [r.prediction for r in results] == [
        str(ARITH[0]["sum"]),
        "[invalid]",
        "999",
        str(ARITH[3]["sum"]),
    ]
    assert all(r.loglikelihoods == () for r in results)


def test_score_loglikelihood_and_rolling(tasks: dict[str, LMEvalTask]) -> None:
    ll = tasks["evalkit_arith_ll"]
    items = ll.items(2)
    results = ll.score(
        items, [[LoglikelihoodResult(-0.5, 1, True)], [LoglikelihoodResult(-3.0, 2, False)]]
    )
    assert [dict(r.metrics) for r in results] == [
        {"acc": 1.0, "perplexity": -0.5},
        {"acc": 0.0, "perplexity": -3.0},
    ]
    assert [r.prediction for r in results] == [None, None]

    roll = tasks["evalkit_prose_rolling"]
    items = roll.items(2)
    results = roll.score(items, [[RollingResult(-40.0, 30)], [RollingResult(-50.0, 35)]])
    text = PROSE[0]["text"]
    n_words, n_bytes = float(len(text.split())), float(len(text.encode()))
    assert dict(results[0].metrics) == {
        "word_perplexity": (-40.0, n_words),
        "byte_perplexity": (-40.0, n_bytes),
        "bits_per_byte": (-40.0, n_bytes),
    }
    assert results[0].loglikelihoods == (-40.0,)


def test_scoring_twice_gives_the_same_results(tasks: dict[str, LMEvalTask]) -> None:
    t = tasks["evalkit_arith_gen"]
    items = t.items(3)
    responses = [[GenerateResult((f" {ARITH[i]['sum']}",))] for i in range(3)]
    assert t.score(items, responses) == t.score(items, responses)


def test_score_rejects_items_of_another_task(tasks: dict[str, LMEvalTask]) -> None:
    other = tasks["evalkit_arith_ll"].items(1)
    with pytest.raises(ValueError, match="does not match"):
        tasks["evalkit_arith_mc"].score(other, [[LoglikelihoodResult(-1.0, 1, True)]])


# -- generation kwargs and responses ------------------------------------------------------------


def test_generation_kwargs_follow_lm_evals_normalization() -> None:
    assert generate_request("t", "p", {"until": "\n\n", "max_new_tokens": 5}) == Generate(
        "p", stop=("\n\n",), max_tokens=5
    )
    assert generate_request("t", "p", {"until": ["a", "b"]}).max_tokens == 256
    assert generate_request("t", "p", {"max_tokens": 7, "max_gen_toks": 3}).max_tokens == 3
    sampled = generate_request("t", "p", {"do_sample": True, "temperature": 0.7})
    assert sampled.temperature == 0.7
    greedy = generate_request("t", "p", {"do_sample": False, "temperature": 0.7, "top_p": 0.9})
    assert greedy.temperature == 0.0
    with pytest.raises(EvalkitError, match="num_beams"):
        generate_request("t", "p", {"num_beams": 4})
    with pytest.raises(EvalkitError, match="top_k"):
        generate_request("t", "p", {"do_sample": True, "temperature": 1.0, "top_k": 50})


def test_responses_become_lm_evals_resps() -> None:
    ll = Loglikelihood("a", " b")
    assert lm_resps(ll, LoglikelihoodResult(-1.5, 1, True), 1) == [(-1.5, True)]
    roll = RollingLoglikelihood("text")
    assert lm_resps(roll, RollingResult(-9.0, 3), 2) == [-9.0, -9.0]
    greedy = Generate("p")
    assert lm_resps(greedy, GenerateResult((" 4",)), 3) == [" 4", " 4", " 4"]
    sampled = Generate("p", temperature=1.0, n=2)
    assert lm_resps(sampled, GenerateResult(("x", "y")), 2) == ["x", "y"]
    with pytest.raises(TypeError):
        lm_resps(ll, RollingResult(-1.0, 1), 1)
