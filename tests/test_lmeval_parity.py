"""lm-eval tasks run through evalkit score exactly as lm-eval's own HF backend scores them.

The same project-written lm-eval YAML tasks (tests/data/lmeval_tasks, one per output type) run
twice on one checkpoint: through `lm_eval.simple_evaluate(model="hf", ...)`, and through evalkit
(load_lmeval_tasks -> items -> Engine(HFBackend) -> task.score). Per item, the prompts and
requests, the log-likelihoods (within 1e-4 nats, plus float32 rounding of lm-eval's own sums on
long texts), the greedy flags, the raw and filtered generations, and every metric must agree; so
must the task-level aggregates.

The bundled trained checkpoint is used when it exists, else a random-init one.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from evalkit.backends.hf import HFBackend
from evalkit.engine import Engine, EngineOptions
from evalkit.requests import Generate, GenerateResult, Loglikelihood, RollingLoglikelihood
from evalkit.tasks.base import Item, ItemResult
from evalkit.tasks.lmeval import LMEvalTask
from evalkit.tasks.lmeval_load import load_lmeval_tasks

TASKS_DIR = Path(__file__).resolve().parent / "data" / "lmeval_tasks"
TINY_BASE = Path(__file__).resolve().parents[1] / "examples" / "checkpoints" / "tiny-base"
TASKS = ["evalkit_arith_mc", "evalkit_arith_gen", "evalkit_arith_ll", "evalkit_prose_rolling"]
LL_TOL = 1e-4
# lm-eval's HF backend sums a request's (or a rolling window's) token log-probs in float32, so
# its own totals are only as fine as float32 at their magnitude (2.4e-4 nats near -3600): the
# tolerance is 1e-4 nats plus two float32 epsilons of the total.
F32_EPS = 2.0**-23


def ll_tolerance(value: float) -> float:
    return LL_TOL + 2 * F32_EPS * abs(value)


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread for both runs: on the shared 2-core machine, two threads under
    oversubscription made the tiny model's matmuls ~60x slower (same for both sides)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ckpt(request: pytest.FixtureRequest) -> Path:
    if (TINY_BASE / "config.json").exists():
        return Path(request.getfixturevalue("tiny_base"))
    return Path(request.getfixturevalue("random_ckpt"))


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both runs start from an unrelated directory: the tasks must not depend on the CWD."""
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def lmeval_out(ckpt: Path, elsewhere: Path) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with _cwd(elsewhere):
        out = simple_evaluate(
            model="hf",
            model_args=f"pretrained={ckpt},dtype=float32,device=cpu",
            tasks=list(TASKS),
            task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
            batch_size=8,
            log_samples=True,
            bootstrap_iters=0,
        )
    assert out is not None
    return dict(out)


EvalkitRun = dict[str, tuple[LMEvalTask, list[Item], list[ItemResult], list[tuple[Any, ...]]]]


@pytest.fixture(scope="module")
def evalkit_out(ckpt: Path, elsewhere: Path) -> EvalkitRun:
    with _cwd(elsewhere):
        tasks = load_lmeval_tasks(TASKS, TASKS_DIR)
        items = {t.name: t.items() for t in tasks}
        engine = Engine(
            HFBackend(ckpt, device="cpu", dtype="float32"),
            cache=None,
            options=EngineOptions(progress=False),
        )
        result = engine.run([r for its in items.values() for it in its for r in it.requests])
        out: EvalkitRun = {}
        for t in tasks:
            its = items[t.name]
            responses = [tuple(result.responses[r.hash] for r in it.requests) for it in its]
            out[t.name] = (t, its, t.score(its, responses), responses)
    return out


def _samples(lmeval_out: dict[str, Any], task: str) -> dict[str, list[dict[str, Any]]]:
    """lm-eval's logged samples of a task, per filter key, in doc order."""
    by_filter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in lmeval_out["samples"][task]:
        by_filter[s["filter"]].append(s)
    for rows in by_filter.values():
        rows.sort(key=lambda s: s["doc_id"])
    return dict(by_filter)


def _same_value(mine: Any, theirs: Any) -> bool:
    if isinstance(theirs, tuple | list):
        return (
            isinstance(mine, tuple)
            and len(mine) == len(theirs)
            and all(_same_value(a, b) for a, b in zip(mine, theirs, strict=True))
        )
    return isinstance(mine, float) and abs(mine - float(theirs)) <= ll_tolerance(float(theirs))


def _as_request(kind: str, args: tuple[Any, ...]) -> Any:
    if kind == "loglikelihood":
        return Loglikelihood(args[0], args[1])
    if kind == "loglikelihood_rolling":
        return RollingLoglikelihood(args[0])
    return args[0]  # generation: the prompt; kwargs are checked in the adapter's unit tests


def test_tasks_and_docs_match(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    assert sorted(lmeval_out["samples"]) == sorted(TASKS)
    for name in TASKS:
        _, items, results, _ = evalkit_out[name]
        for rows in _samples(lmeval_out, name).values():
            assert [s["doc_id"] for s in rows] == [it.doc_id for it in items]
        assert [r.doc_id for r in results] == [it.doc_id for it in items]
        assert len(items) >= 20


def test_requests_match(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    """Same prompts (few-shot examples included) and requests, built by lm-eval both times."""
    for name in TASKS:
        task, items, _, _ = evalkit_out[name]
        rows = next(iter(_samples(lmeval_out, name).values()))
        for it, s in zip(items, rows, strict=True):
            args = [tuple(a) for a in s["arguments"]]
            assert it.prompt == args[0][0]
            if task.output_type == "generate_until":
                assert len(it.requests) == 1
                req = it.requests[0]
                assert isinstance(req, Generate)
                assert req.prompt == args[0][0]
                assert req.stop == ("\n",) and req.max_tokens == 8 and req.temperature == 0
            else:
                kind = "loglikelihood_rolling" if task.output_type.endswith("rolling") else ""
                want = [_as_request(kind or "loglikelihood", a) for a in args]
                assert list(it.requests) == want


def test_loglikelihoods_match(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    worst = {"short": 0.0, "rolling": 0.0}
    for name in ("evalkit_arith_mc", "evalkit_arith_ll", "evalkit_prose_rolling"):
        _, _, results, _ = evalkit_out[name]
        rows = _samples(lmeval_out, name)["none"]
        for r, s in zip(results, rows, strict=True):
            # resps: per request, the list of its `repeats` answers.
            theirs = [
                float(resp[0][0]) if isinstance(resp[0], tuple | list) else float(resp[0])
                for resp in s["resps"]
            ]
            assert len(r.loglikelihoods) == len(theirs)
            for a, b in zip(r.loglikelihoods, theirs, strict=True):
                kind = "rolling" if name.endswith("rolling") else "short"
                worst[kind] = max(worst[kind], abs(a - b))
                assert abs(a - b) <= ll_tolerance(b), (name, r.doc_id, a, b)
    print(
        "largest log-likelihood difference vs lm-eval: "
        f"{worst['short']:.2e} nats (loglikelihood), {worst['rolling']:.2e} nats (rolling)"
    )


def test_greedy_flags_match(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    for name in ("evalkit_arith_mc", "evalkit_arith_ll"):
        _, _, _, responses = evalkit_out[name]
        rows = _samples(lmeval_out, name)["none"]
        for resps, s in zip(responses, rows, strict=True):
            assert [r.is_greedy for r in resps] == [bool(x[0][1]) for x in s["resps"]]


def test_generations_match(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    _, _, results, responses = evalkit_out["evalkit_arith_gen"]
    by_filter = _samples(lmeval_out, "evalkit_arith_gen")
    assert list(by_filter) == ["strict-match", "flexible-extract"]
    for i, (r, resps) in enumerate(zip(results, responses, strict=True)):
        raw = resps[0]
        assert isinstance(raw, GenerateResult)
        for rows in by_filter.values():
            assert [raw.texts[0]] == list(rows[i]["resps"][0])
        # The prediction is the first filter's filtered response, identical to lm-eval's.
        assert r.prediction == by_filter["strict-match"][i]["filtered_resps"][0]


def test_every_metric_matches(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    for name in TASKS:
        _, _, results, _ = evalkit_out[name]
        by_filter = _samples(lmeval_out, name)
        only_none = list(by_filter) == ["none"]
        for i, r in enumerate(results):
            expected: dict[str, Any] = {}
            for key, rows in by_filter.items():
                s = rows[i]
                for m in s["metrics"]:
                    expected[m if only_none else f"{m},{key}"] = s[m]
            assert set(r.metrics) == set(expected), (name, r.doc_id)
            for k, v in expected.items():
                assert _same_value(r.metrics[k], v), (name, r.doc_id, k, r.metrics[k], v)


def test_aggregates_match(lmeval_out: dict[str, Any], evalkit_out: EvalkitRun) -> None:
    for name in TASKS:
        task, _, results, _ = evalkit_out[name]
        theirs = lmeval_out["results"][name]
        only_none = list(_samples(lmeval_out, name)) == ["none"]
        assert task.metrics
        for spec in task.metrics:
            key = f"{spec.name},none" if only_none else spec.name
            mine = spec.aggregate([r.metrics[spec.name] for r in results])
            assert mine == pytest.approx(theirs[key], rel=1e-3, abs=LL_TOL), (name, spec.name)
            assert spec.higher_is_better == lmeval_out["higher_is_better"][name][key.split(",")[0]]
