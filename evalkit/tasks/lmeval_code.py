"""lm-eval's code tasks (those it marks `unsafe_code`: humaneval, mbpp...) run the safe way.

lm-eval scores them with Hugging Face `evaluate`'s `code_eval` metric, which executes every
program `candidate + "\\n" + test_case` in the evaluating process (threads, a 3 s timeout, no
isolation) and reports pass@k with Chen et al.'s unbiased estimator. evalkit keeps lm-eval's
requests, filters and `process_results` (so prompts, stop sequences, answer extraction and the
test programs are lm-eval's own) and replaces only the executor:

- While an lm-eval task module is imported, `evaluate.load("code_eval")` returns a
  `DeferredCodeEval` instead of downloading and running `code_eval` (its import-time self-test
  included). Nothing is executed in evalkit's process.
- Scoring a document first runs lm-eval's filters and `process_results` with the deferred
  metric collecting the programs `code_eval` would execute; evalkit's sandbox
  (`evalkit.sandbox`) runs them; `process_results` then runs again and the deferred metric
  answers from those outcomes, computing pass@k exactly as `code_eval` does.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from evalkit.requests import Response
from evalkit.tasks.base import Item, ItemResult, MetricSpec, Needs, ScoringContext
from evalkit.tasks.executed import Execution, plain_score_refused, score_by_running
from evalkit.tasks.lmeval import LMEvalTask

# code_eval's defaults: compute(..., k=[1, 10, 100], timeout=3.0).
DEFAULT_KS = (1, 10, 100)
DEFAULT_TIMEOUT = 3.0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased estimator 1 - C(n - c, k) / C(n, k), as a stable product."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


class DeferredCodeEval:
    """Stands in for `evaluate.load("code_eval")`: collects programs, or answers from outcomes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.collected: list[str] = []
        self.outcomes: dict[str, bool] | None = None  # None: collecting
        self.timeout: float = DEFAULT_TIMEOUT

    def compute(
        self,
        predictions: Sequence[Sequence[str]],
        references: Sequence[str],
        k: Sequence[int] | int = DEFAULT_KS,
        num_workers: int = 4,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple[dict[str, float], dict[int, list[Any]]]:
        ks = [k] if isinstance(k, int) else list(k)
        programs = [
            [f"{candidate}\n{test}" for candidate in candidates]
            for candidates, test in zip(predictions, references, strict=True)
        ]
        with self._lock:
            self.timeout = float(timeout)
            if self.outcomes is None:
                self.collected.extend(p for ps in programs for p in ps)
                return {f"pass@{x}": 0.0 for x in ks}, {}
            passed = [[self.outcomes[p] for p in ps] for ps in programs]
        total = np.asarray([len(p) for p in passed])
        correct = np.asarray([sum(p) for p in passed])
        results = {
            i: [(j, {"task_id": i, "completion_id": j, "passed": ok}) for j, ok in enumerate(p)]
            for i, p in enumerate(passed)
        }
        scores = {
            f"pass@{x}": float(
                np.mean([pass_at_k(int(n), int(c), x) for n, c in zip(total, correct, strict=True)])
            )
            for x in ks
            if (total >= x).all()
        }
        return scores, results


DEFERRED = DeferredCodeEval()


def _patch_load(evaluate: Any) -> Any:
    """Make `evaluate.load("code_eval")` return DEFERRED; returns the original `load`."""
    original = evaluate.load

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path).rstrip("/").split("/")[-1] == "code_eval":
            return DEFERRED
        return original(path, *args, **kwargs)

    evaluate.load = load
    return original


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Patches `evaluate` as it is imported. Importing it eagerly costs ~10 s (it pulls in
    transformers' pipelines), which every lm-eval task load paid although only code tasks
    import it."""

    def __init__(self) -> None:
        self.originals: list[tuple[Any, Any]] = []
        self._real: Any = None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "evaluate":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                self._real = spec.loader
                spec.loader = self
                return spec
        return None

    def create_module(self, spec: Any) -> Any:
        return self._real.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._real.exec_module(module)
        self.originals.append((module, _patch_load(module)))


@contextlib.contextmanager
def deferred_code_eval() -> Iterator[None]:
    """`evaluate.load("code_eval")` gives DEFERRED while lm-eval imports its task modules.
    `evaluate` is patched now if already imported, else when a task module imports it."""
    hook = _PatchOnImport()
    loaded = sys.modules.get("evaluate")
    if loaded is not None:
        hook.originals.append((loaded, _patch_load(loaded)))
    else:
        sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)
        for module, original in hook.originals:
            module.load = original
        with DEFERRED._lock:
            DEFERRED.collected.clear()


def _uses_deferred(fn: Any) -> bool:
    """Whether `fn` (an lm-eval metric or process_results) gets code_eval from its module."""
    import inspect

    for _ in range(5):  # lm-eval wraps metrics: `fn.__call__` method-wrappers, partials
        inner = getattr(fn, "__self__", None) or getattr(fn, "func", None)
        if inner is None or getattr(fn, "__globals__", None) is not None:
            break
        fn = inner
    scope = getattr(fn, "__globals__", None)
    if scope is None:
        module = inspect.getmodule(fn)
        scope = vars(module) if module is not None else {}
    return any(v is DEFERRED for v in scope.values())


class LMEvalCodeTask(LMEvalTask):
    """An lm-eval task that executes model-written code, executed in evalkit's sandbox."""

    executes_code = True
    needs = Needs(sandbox=True)

    def __init__(self, task: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(task, *args, **kwargs)
        # Only code_eval's execution is deferred: anything else that scores this task could run
        # the model's code in this process, so such a task is refused before it is built.
        config = getattr(task, "config", None)
        fns = list((getattr(task, "_metric_fn_list", None) or {}).values())
        custom = getattr(config, "process_results", None)
        if callable(custom):
            fns.append(custom)
        if not fns or not all(_uses_deferred(fn) for fn in fns):
            from evalkit.errors import EvalkitError

            raise EvalkitError(
                f"task {self.name}: lm-eval marks it unsafe and scores it with something other "
                "than evaluate's code_eval; evalkit can sandbox only code_eval's programs"
            )

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        # An `evaluate` metric returning {"pass@1": ...} reports under those keys, not under the
        # metric's own name (lm-eval's process_results expands the dict).
        keys = self._filter_keys()
        better = dict(self._task.higher_is_better() or {})
        kwargs: Mapping[str, Any] = getattr(self._task, "_metric_fn_kwargs", {}) or {}
        specs = []
        for key in keys:
            for metric in dict(self._task.aggregation()):
                ks = kwargs.get(metric, {}).get("k")
                names = (
                    [f"pass@{k}" for k in ([ks] if isinstance(ks, int) else ks)] if ks else [metric]
                )
                hib = better.get(metric)
                specs += [
                    MetricSpec(self._metric_key(n, key, keys), True if hib is None else bool(hib))
                    for n in names
                ]
        return tuple(specs)

    @property
    def timeout_seconds(self) -> float:
        kwargs: Mapping[str, Any] = getattr(self._task, "_metric_fn_kwargs", {}) or {}
        found = [float(kw["timeout"]) for kw in kwargs.values() if "timeout" in kw]
        return max(found) if found else DEFAULT_TIMEOUT

    def programs(self, item: Item, responses: Sequence[Response]) -> tuple[str, ...]:
        """The programs lm-eval's scoring of this document would execute, in order."""
        with DEFERRED._lock:
            DEFERRED.collected.clear()
            DEFERRED.outcomes = None
        LMEvalTask.score(self, [item], [responses])  # lm-eval's scoring, not the refusal
        with DEFERRED._lock:
            found = tuple(DEFERRED.collected)
            DEFERRED.collected.clear()
        return found

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        raise plain_score_refused(self)

    def score_in(
        self,
        context: ScoringContext,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
    ) -> list[ItemResult]:
        return score_by_running(self, context, items, responses)

    def score_executed(
        self,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
        executions: Sequence[Sequence[Execution]],
    ) -> list[ItemResult]:
        outcomes: dict[str, bool] = {}
        for item, resps, runs in zip(items, responses, executions, strict=True):
            progs = self.programs(item, resps)
            if len(progs) != len(runs):
                raise ValueError(f"task {self.name}: {len(runs)} executions for doc {item.doc_id}")
            outcomes.update({p: bool(e.passed) for p, e in zip(progs, runs, strict=True)})
        with DEFERRED._lock:
            DEFERRED.outcomes = outcomes
        try:
            results = LMEvalTask.score(self, items, responses)
        finally:
            with DEFERRED._lock:
                DEFERRED.outcomes = None
        status = {
            it.doc_id: runs[0].status for it, runs in zip(items, executions, strict=True) if runs
        }
        return [
            ItemResult(
                doc_id=r.doc_id,
                prompt_hash=r.prompt_hash,
                loglikelihoods=r.loglikelihoods,
                prediction=r.prediction,
                target=r.target,
                metrics=r.metrics,
                tags={**r.tags, **({"status": status[r.doc_id]} if r.doc_id in status else {})},
                truncated=r.truncated,
            )
            for r in results
        ]
