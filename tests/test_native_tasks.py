"""Native task specs, templates, few-shot, generators and per-item metrics."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from evalkit import metrics as M
from evalkit.errors import EvalkitError
from evalkit.requests import Generate, GenerateResult, Loglikelihood, LoglikelihoodResult
from evalkit.tasks.generators import GENERATORS, generator_table
from evalkit.tasks.native import NativeTask
from evalkit.tasks.native_spec import load_spec
from evalkit.tasks.registry import load_suite, native_specs, resolve_tasks

MC_SPEC = """
name: t_mc
family: reasoning
version: 1
kind: multiple_choice
docs: {generator: addition_mc, seed: 1, n: 30}
prompt: "{a} + {b} ="
choices: choices
gold: gold
"""


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_multiple_choice_items_and_scoring(tmp_path: Path) -> None:
    task = NativeTask(load_spec(write(tmp_path, MC_SPEC)))
    items = task.items()
    assert len(items) == 30
    it = items[0]
    doc = task.docs()[0]
    assert it.prompt == f"{doc['a']} + {doc['b']} ="
    assert [r.continuation for r in it.requests if isinstance(r, Loglikelihood)] == [
        " " + c for c in doc["choices"]
    ]
    gold = doc["gold"]
    lls = [-5.0] * 4
    lls[gold] = -1.0
    (res,) = task.score([it], [[LoglikelihoodResult(x, 1, False) for x in lls]])
    assert res.metrics["acc"] == 1.0 and res.metrics["acc_norm"] == 1.0
    assert res.metrics["p_correct"] == pytest.approx(
        math.exp(-1) / (math.exp(-1) + 3 * math.exp(-5))
    )
    assert res.metrics["bpb"] == pytest.approx(
        1.0 / (math.log(2) * len((" " + it.target).encode()))
    )
    assert res.prediction == it.target and res.loglikelihoods == tuple(lls)


def test_limit_and_determinism(tmp_path: Path) -> None:
    a = NativeTask(load_spec(write(tmp_path, MC_SPEC)))
    b = NativeTask(load_spec(write(tmp_path, MC_SPEC)))
    assert a.items(5) == b.items(5)
    assert a.content_hash(a.items()) == b.content_hash(b.items())
    c = NativeTask(load_spec(write(tmp_path, MC_SPEC.replace("seed: 1", "seed: 2"))))
    assert c.content_hash(c.items()) != a.content_hash(a.items())


def test_few_shot_never_shows_the_item_itself(tmp_path: Path) -> None:
    spec = MC_SPEC + "fewshot: {k: 5, seed: 3}\n"
    task = NativeTask(load_spec(write(tmp_path, spec)))
    docs = task.docs()
    for it in task.items():
        doc = docs[it.doc_id]
        shots = it.prompt.split("\n\n")[:-1]
        assert len(shots) == 5
        own = f"{doc['a']} + {doc['b']} = {doc['answer']}"
        assert own not in shots
        assert it.prompt.endswith(f"{doc['a']} + {doc['b']} =")


def test_missing_template_key_names_task_template_and_doc(tmp_path: Path) -> None:
    task = NativeTask(load_spec(write(tmp_path, MC_SPEC.replace("{a} +", "{alpha} +"))))
    with pytest.raises(EvalkitError, match=r"t_mc: template 'prompt' uses \{alpha\}, which doc 0"):
        task.items()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace("kind: multiple_choice", "kind: essay"), "kind must be one of"),
        (lambda s: s.replace("name: t_mc\n", ""), "missing required key 'name'"),
        (lambda s: s + "promt: typo\n", "unknown key"),
        (lambda s: s + "metrics: [exact_match]\n", "not available for kind"),
        (
            lambda s: s.replace("docs: {generator: addition_mc, seed: 1, n: 30}", "docs: {}"),
            "exactly one",
        ),
        (lambda s: s + "  bad indent: [\n", "invalid YAML"),
    ],
)
def test_malformed_specs_fail_with_the_file_and_reason(tmp_path: Path, edit, message: str) -> None:
    path = write(tmp_path, edit(MC_SPEC))
    with pytest.raises(EvalkitError, match=message) as exc:
        load_spec(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_duplicate_native_task_names_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, MC_SPEC, "a.yaml")
    write(tmp_path, MC_SPEC, "b.yaml")
    with pytest.raises(EvalkitError, match="duplicate task name 't_mc'"):
        native_specs([tmp_path])


def test_listing_a_generator_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        generator_table([*GENERATORS.items(), ("addition_mc", lambda rng, n: [])])
    # The table is read-only: nothing can overwrite a generator after import.
    with pytest.raises(TypeError):
        GENERATORS["addition_mc"] = lambda rng, n: []  # type: ignore[index]


def test_generate_task_extracts_the_first_number(tmp_path: Path) -> None:
    spec = """
name: t_gen
family: reasoning
version: 1
kind: generate
docs: {generator: addition_mc, seed: 1, n: 4}
prompt: "{a} + {b} ="
target: "{answer}"
extract: {select: first}
max_tokens: 6
"""
    task = NativeTask(load_spec(write(tmp_path, spec)))
    items = task.items()
    req = items[0].requests[0]
    assert isinstance(req, Generate) and req.stop == ("\n",) and req.max_tokens == 6
    results = task.score(
        items[:2],
        [[GenerateResult((f" {items[0].target} apples",))], [GenerateResult((" 1,000",))]],
    )
    assert results[0].metrics["exact_match"] == 1.0 and results[0].prediction == items[0].target
    assert results[1].prediction == "1000" and results[1].metrics["exact_match"] == 0.0


def test_metric_functions() -> None:
    assert M.extract_number("the answer is 42, not 7", "last") == "7"
    assert M.extract_number("no digits") is None
    assert M.softmax_probability([0.0, 0.0], 1) == pytest.approx(0.5)
    assert M.bits_per_byte(-math.log(2) * 3, "abc") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.multiple_choice([-1.0], ["a", "b"], 0)


def test_generators_are_pinned() -> None:
    # The first documents of each generator: a change here changes every task built on it.
    docs = GENERATORS["addition_mc"](random.Random(1234), 2)
    assert docs[0] == {
        "a": 16,
        "b": 13,
        "answer": "29",
        "choices": docs[0]["choices"],
        "gold": docs[0]["choices"].index("29"),
        "difficulty": "no_carry",
    }
    assert len(docs[0]["choices"]) == 4 and len(set(docs[0]["choices"])) == 4
    kv = GENERATORS["kv_recall"](random.Random(7), 1)[0]
    assert f"key {kv['key']} is {kv['value']}." in kv["records"]


def test_smoke_suite_resolves_with_pinned_content() -> None:
    suite = load_suite("smoke")
    tasks = resolve_tasks(list(suite.tasks))
    kinds = {t.spec.request for t in tasks}  # type: ignore[attr-defined]
    assert kinds == {"multiple_choice", "generate", "loglikelihood", "rolling"}
    hashes = {t.name: t.content_hash(t.items()) for t in tasks}
    assert hashes["smoke_arith_mc"] == (
        "27d929b93d5e024d3d235984854bb0f83b3376a68c94a95e46f77b0e37308fca"
    )


def test_unknown_suite_lists_the_known_ones() -> None:
    with pytest.raises(EvalkitError, match="smoke"):
        load_suite("no_such_suite")
