"""`--suite transfer-full` as shipped: every task in it can run (offline checks).

Each lm-eval name is looked up in lm-eval's own registry index (no data is fetched) and expanded
to its leaf tasks (groups, nested groups and tags); each leaf's configuration must be one evalkit
runs (output type, no images or audio, generation kwargs the engine takes, unsafe code only as a
generation task, which evalkit sandboxes), and the suite's few-shot count must be one lm-eval
can honour (a split or fixed samples to draw from, and no `num_fewshot: 0` pinned in the YAML,
which lm-eval would keep over the suite's count). Native names must resolve. One benchmark,
ARC-Easy, runs end to end on documents in its own schema, against lm-eval's own evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.tasks.lmeval_convert import generate_request
from evalkit.tasks.registry import load_suite, native_specs, resolve_tasks

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = {"multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until"}
OLMES_REASONING = {
    "mmlu",
    "arc_easy",
    "arc_challenge",
    "hellaswag",
    "piqa",
    "winogrande",
    "boolq",
    "openbookqa",
    "commonsense_qa",
    "social_iqa",
    "gsm8k",
}


@pytest.fixture(scope="module")
def index() -> dict[str, Any]:
    from evalkit.tasks.lmeval_load import _registry_manager

    # The process's one index of lm-eval's registry (evalkit's own lookups share it).
    return dict(_registry_manager().task_index)


def _leaves(name: str, index: dict[str, Any], seen: set[str] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    if name in seen:
        return []
    seen.add(name)
    entry = index[name]
    kind = entry.kind.name
    if kind == "TAG":
        return [n for n, e in index.items() if name in e.tags and e.kind.name != "TAG"]
    if kind != "GROUP":
        return [name]
    out: list[str] = []
    for m in (entry.cfg or {}).get("task") or []:
        if isinstance(m, str):
            out += _leaves(m, index, seen)
        elif isinstance(m, dict) and isinstance(m.get("group"), str) and m["group"] in index:
            out += _leaves(m["group"], index, seen)
        elif isinstance(m, dict) and isinstance(m.get("task"), list):
            for t in m["task"]:
                out += _leaves(t, index, seen)
        elif isinstance(m, dict) and isinstance(m.get("task"), str):
            out += _leaves(m["task"], index, seen)
    return out


def _config(name: str, index: dict[str, Any]) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = index[name]
    cfg = dict(entry.cfg or {})
    if entry.yaml_path is not None:
        cfg = {**load_yaml(entry.yaml_path, resolve_func=False, recursive=True), **cfg}
    return cfg


def test_the_suite_has_the_olmes_reasoning_set_and_its_families() -> None:
    suite = load_suite("transfer-full")
    assert set(suite.families["reasoning"]) >= OLMES_REASONING
    flat = [t for names in suite.families.values() for t in names]
    assert sorted(flat) == sorted(suite.tasks)
    assert set(suite.families) == {"reasoning", "multilingual", "icl", "code", "longctx"}
    assert all(suite.fewshot.get(t) == 5 for t in OLMES_REASONING)


def test_every_task_in_the_suite_is_one_evalkit_runs(index: dict[str, Any]) -> None:
    suite = load_suite("transfer-full")
    native = native_specs([ROOT / "tasks"])
    problems: list[str] = []
    checked = 0
    for name in suite.tasks:
        if name in native:
            resolve_tasks([name])
            continue
        if name not in index:
            problems.append(f"{name}: not in lm-eval's registry")
            continue
        leaves = _leaves(name, index)
        if not leaves:
            problems.append(f"{name}: expands to no tasks")
        k = suite.fewshot.get(name)
        for leaf in leaves:
            cfg = _config(leaf, index)
            checked += 1
            kind = cfg.get("output_type", "generate_until")
            if kind not in RUNNABLE:
                problems.append(f"{leaf}: output type {kind}")
            if cfg.get("doc_to_image") or cfg.get("doc_to_audio"):
                problems.append(f"{leaf}: multimodal")
            if cfg.get("unsafe_code") and kind != "generate_until":
                problems.append(f"{leaf}: unsafe code outside generation")
            if kind == "generate_until":
                try:
                    generate_request(leaf, "x", cfg.get("generation_kwargs") or {})
                except Exception as exc:
                    problems.append(f"{leaf}: {exc}")
            if k:
                fixed = (cfg.get("fewshot_config") or {}).get("samples")
                pool = cfg.get("fewshot_split") or cfg.get("training_split")
                pool = pool or cfg.get("validation_split")
                if not (pool or fixed):
                    problems.append(f"{leaf}: {k}-shot but nothing to draw from")
                if cfg.get("num_fewshot") == 0:
                    problems.append(f"{leaf}: pins num_fewshot 0, lm-eval keeps it")
    assert not problems, problems
    assert checked > 100  # MMLU alone is 57 tasks, twice


# -- ARC-Easy end to end on documents in its own schema ------------------------------------------


def _arc_docs(n: int, offset: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"Q{offset + i}",
            "question": f"Which number is {offset + i} plus one?",
            "choices": {
                "text": [str(offset + i + d) for d in (0, 1, 2, 3)],
                "label": ["A", "B", "C", "D"],
            },
            "answerKey": "B" if i % 3 else "C",
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def arc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import lm_eval

    root = tmp_path_factory.mktemp("arc") / "tasks"
    root.mkdir()
    files = {}
    for split, n, off in (("train", 12, 100), ("validation", 4, 200), ("test", 9, 0)):
        files[split] = root / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(d) + "\n" for d in _arc_docs(n, off)))
    source = Path(lm_eval.__file__).parent / "tasks" / "arc" / "arc_easy.yaml"
    (root / "arc_easy_local.yaml").write_text(
        f"include: {source}\n"
        "task: arc_easy_local\n"
        "dataset_path: json\n"
        "dataset_name: null\n"
        "dataset_kwargs:\n  data_files: "
        + json.dumps({k: str(v) for k, v in files.items()})
        + "\nnum_fewshot: 5\n"
    )
    return root


def score_fn(context: str, continuation: str) -> float:
    # Prefers the larger number, a little: right on "B" items, wrong on "C" ones.
    return float(continuation.strip()) % 7 / 10 - 1.0


def test_arc_easy_runs_end_to_end_as_lm_eval_runs_it(arc_dir: Path, tmp_path: Path) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

    class Scripted(LM):  # type: ignore[misc]
        def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            return [(score_fn(*r.args), False) for r in requests]

        def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            raise AssertionError

        def generate_until(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            raise AssertionError

    theirs = simple_evaluate(
        model=Scripted(),
        tasks=["arc_easy_local"],
        task_manager=TaskManager(include_path=str(arc_dir), include_defaults=False),
        log_samples=False,
    )
    assert theirs is not None
    want = theirs["results"]["arc_easy_local"]
    run = evalkit.score(
        "unused",
        tasks=["arc_easy_local"],
        tasks_dir=arc_dir,
        backend=FakeBackend(score_fn),
        use_cache=False,
        progress=False,
        out=tmp_path / "run",
    )
    got = {s.label: s.value for s in run.rows if s.display_task == "arc_easy_local"}
    assert got["acc"] == pytest.approx(want["acc,none"])
    assert got["acc_norm"] == pytest.approx(want["acc_norm,none"])
    assert 0 < got["acc"] < 1
    assert run.manifest["tasks"][0]["num_fewshot"] == 5
