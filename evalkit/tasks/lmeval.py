"""lm-eval tasks behind evalkit's Task interface (loaded by lmeval_load.py; values converted by
lmeval_convert.py).

Anything lm-eval's `TaskManager` can load (its registry, or a user's directory of lm-eval YAML)
is built into requests by lm-eval, executed by evalkit's engine, and scored by lm-eval's own
filters and `process_results`, mirroring `lm_eval.evaluator.evaluate`:

1. `task.build_all_requests(limit=...)` (few-shot sampler seeded as `simple_evaluate` does, and
   `num_fewshot` defaulting to 0 when the task leaves it unset); one `Item` per document, whose
   requests are the document's instances in `idx` order.
2. The engine answers each request; the answer becomes the instance's `resps` exactly as
   lm-eval's LM would set it: `(logprob, is_greedy)` for loglikelihood, a float for rolling
   loglikelihood, the generated string for generation, repeated `repeats` times.
3. `task.apply_filters()` over the task's instances, then `task.process_results(doc, ...)` per
   document and per filter key, with the filtered responses of that filter.

lm-eval is imported inside functions only: importing this module stays cheap.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import (
    LoglikelihoodResult,
    Request,
    Response,
    RollingResult,
)
from evalkit.tasks.base import (
    Item,
    ItemResult,
    MetricSpec,
    MetricValue,
    TaskDefaults,
    TokenizerInfo,
    check_metric_names,
    items_hash,
    text_hash,
)
from evalkit.tasks.groups import GroupSpec
from evalkit.tasks.lmeval_convert import (
    LMAggregate,
    as_text,
    first_line,
    lm_resps,
    metric_value,
    to_request,
)
from evalkit.tasks.lmeval_templates import compiled_once
from evalkit.tasks.options import RunOptions

SOURCE = "lm-eval"
DEFAULT_FAMILY = "lm-eval"
# lm_eval.defaults: simple_evaluate's default fewshot_random_seed.
FEWSHOT_SEED = 1234


class LMEvalTask(TaskDefaults):
    """One lm-eval task (a leaf: groups are expanded by `load_lmeval_tasks`)."""

    source = SOURCE
    # Subclasses that run lm-eval's unsafe (code-executing) tasks in evalkit's sandbox say so.
    executes_code = False

    def __init__(
        self, task: Any, family: str = DEFAULT_FAMILY, groups: tuple[GroupSpec, ...] = ()
    ) -> None:
        self._task = task
        self._family = family
        self._groups = groups
        self._fewshot_seed = FEWSHOT_SEED
        self._sample_seed = 0  # the seed of sampled generations (Generate.seed)
        self._instances: dict[int, list[Any]] = {}  # doc_id -> instances, by idx
        if getattr(task, "MULTIMODAL", False):
            raise EvalkitError(f"task {self.name}: multimodal tasks are not supported")
        if getattr(task, "UNSAFE_CODE", False) and not self.executes_code:
            raise EvalkitError(
                f"task {self.name}: lm-eval marks it unsafe (it runs model-written code); "
                "evalkit runs them only through its sandbox (LMEvalCodeTask)"
            )
        try:
            check_metric_names(self.name, [m.name for m in self.metrics])
        except ValueError as exc:
            raise EvalkitError(str(exc)) from None

    # -- identity ----------------------------------------------------------------------------
    @property
    def lm_task(self) -> Any:
        """The underlying lm-eval Task."""
        return self._task

    @property
    def name(self) -> str:
        return str(self._task.task_name)

    @property
    def family(self) -> str:
        return self._family

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        """The lm-eval groups (the one asked for and those nested in it) this task is in."""
        return self._groups

    @property
    def version(self) -> str:
        return str(getattr(self._task, "VERSION", None))

    def in_family(self, family: str) -> LMEvalTask:
        """A suite's family for a task outside any group (a group's tasks keep the group)."""
        if not self._groups:
            self._family = family
        return self

    accepts_options = True

    def with_options(self, options: RunOptions) -> LMEvalTask:
        """--num-fewshot, --gen-kwargs and --seed applied as lm-eval's `simple_evaluate` applies
        them (this wrapper configures its own lm-eval task object and returns itself)."""
        task = self._task
        if options.num_fewshot is not None and task.get_config("num_fewshot") != 0:
            # lm-eval never overrides a task whose YAML fixes num_fewshot: 0.
            task.set_config(key="num_fewshot", value=options.num_fewshot)
        if options.gen_kwargs and self.output_type == "generate_until":
            current = dict(task.get_config("generation_kwargs") or {})
            task.set_config(key="generation_kwargs", value={**current, **options.gen_kwargs})
        if options.seed is not None:
            self._fewshot_seed = options.seed
            self._sample_seed = options.seed
        self._instances.clear()
        return self

    @property
    def num_fewshot(self) -> int:
        return int(self._task.get_config("num_fewshot") or 0)

    @property
    def manifest_fields(self) -> dict[str, Any]:
        """What lm-eval's results files say per task and the run store keeps for them."""
        gen = self._task.get_config("generation_kwargs")
        return {
            "output_type": self.output_type,
            "num_fewshot": self.num_fewshot,
            "fewshot_seed": self._fewshot_seed,
            **(
                {"generation_kwargs": dict(gen)}
                if gen and self.output_type == "generate_until"
                else {}
            ),
            "lmeval_groups": [dataclasses.asdict(g) for g in self._groups],
        }

    @property
    def output_type(self) -> str:
        return str(getattr(self._task, "OUTPUT_TYPE", None))

    def _filter_keys(self) -> list[str]:
        filters = getattr(self._task, "_filters", None) or []
        keys = [str(f.name) for f in filters]
        return keys or ["none"]

    def _metric_key(self, metric: str, filter_key: str, keys: Sequence[str]) -> str:
        return metric if list(keys) == ["none"] else f"{metric},{filter_key}"

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        from lm_eval.api.metrics import mean as lm_mean

        keys = self._filter_keys()
        aggregation = dict(self._task.aggregation())
        better = dict(self._task.higher_is_better() or {})
        specs = []
        for key in keys:
            for metric, fn in aggregation.items():
                hib = better.get(metric)
                specs.append(
                    MetricSpec(
                        name=self._metric_key(metric, key, keys),
                        higher_is_better=True if hib is None else bool(hib),
                        aggregate=LMAggregate(fn),
                        is_mean=fn is lm_mean,
                    )
                )
        return tuple(specs)

    # -- items -------------------------------------------------------------------------------
    def _build(self, n_docs: int) -> dict[int, list[Any]]:
        """lm-eval's instances for the first `n_docs` documents, as evaluate() builds them."""
        task = self._task
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)  # as simple_evaluate does
        task.set_fewshot_seed(seed=self._fewshot_seed)
        try:
            with compiled_once():
                task.build_all_requests(limit=n_docs, rank=0, world_size=1, cache_requests=False)
        except EvalkitError:
            raise
        except Exception as exc:
            raise EvalkitError(
                f"task {self.name}: lm-eval cannot build its requests: {first_line(exc)}"
            ) from exc
        by_doc: dict[int, list[Any]] = defaultdict(list)
        for inst in task.instances:
            by_doc[int(inst.doc_id)].append(inst)
        for insts in by_doc.values():
            insts.sort(key=lambda x: x.idx)
        self._instances.update(by_doc)
        return dict(by_doc)

    def _n_docs(self) -> int:
        return len(self._task.eval_docs)

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        total = self._n_docs()
        n = total if limit is None else min(limit, total)
        if n == 0:
            return []
        built = self._build(n)
        with compiled_once():  # targets and choices render templates per document too
            return [self._item(doc_id, insts) for doc_id, insts in built.items()]

    def _requests(self, insts: Sequence[Any]) -> tuple[Request, ...]:
        return tuple(to_request(self.name, inst, self._sample_seed) for inst in insts)

    def _choices(self, doc: Any) -> list[str] | None:
        config = getattr(self._task, "config", None)
        if getattr(config, "doc_to_choice", None) is None:
            return None
        choices = self._task.doc_to_choice(doc)
        return [str(c) for c in choices] if isinstance(choices, list | tuple) else None

    def _target(self, doc: Any) -> str:
        """`doc_to_target(doc)` as text; an index into the choices becomes the gold choice's
        text (without the target delimiter)."""
        target = self._task.doc_to_target(doc)
        choices = self._choices(doc)
        if choices is not None and not getattr(self._task, "multiple_input", 0):

            def pick(t: Any) -> Any:
                if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < len(choices):
                    return choices[t]
                return t

            target = [pick(t) for t in target] if isinstance(target, list) else pick(target)
        return str(target)

    def _item(self, doc_id: int, insts: Sequence[Any]) -> Item:
        first = insts[0]
        return Item(
            doc_id=doc_id,
            prompt=str(first.args[0]),
            requests=self._requests(insts),
            target=self._target(first.doc),
            tags=(),
        )

    def content_hash(self, items: Sequence[Item]) -> str:
        return items_hash(items)

    # -- scoring -----------------------------------------------------------------------------
    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        with compiled_once():  # process_results renders targets and choices per document
            return self._score(items, responses)

    def _score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        if len(items) != len(responses):
            raise ValueError(f"{len(items)} items but {len(responses)} response lists")
        if not items:
            return []
        missing = [it.doc_id for it in items if it.doc_id not in self._instances]
        if missing:
            self._build(max(missing) + 1)
        task = self._task
        per_item: list[list[Any]] = []
        for item, resps in zip(items, responses, strict=True):
            source = self._instances.get(item.doc_id)
            if source is None or self._requests(source) != item.requests:
                raise ValueError(
                    f"task {self.name}: item for doc {item.doc_id} does not match the requests "
                    "lm-eval builds for it"
                )
            if len(resps) != len(source):
                raise ValueError(
                    f"task {self.name}: doc {item.doc_id} has {len(source)} requests but "
                    f"{len(resps)} responses"
                )
            insts = []
            for inst, request, response in zip(source, item.requests, resps, strict=True):
                mine = copy.copy(inst)  # fresh resps per call: lm-eval's instances are mutable
                mine.resps = lm_resps(request, response, int(inst.repeats or 1))
                mine.filtered_resps = {}
                insts.append(mine)
            per_item.append(insts)

        # Filters run over all of the task's instances at once, as in evaluate().
        flat = [inst for insts in per_item for inst in insts]
        saved = task._instances
        task._instances = flat
        try:
            task.apply_filters()
        finally:
            task._instances = saved
        keys = list(flat[0].filtered_resps)

        results = []
        for item, insts, resps in zip(items, per_item, responses, strict=True):
            doc = insts[0].doc
            metrics: dict[str, MetricValue] = {}
            for key in keys:
                values = task.process_results(doc, [inst.filtered_resps[key] for inst in insts])
                for metric, value in values.items():
                    metrics[self._metric_key(str(metric), key, keys)] = metric_value(
                        self.name, str(metric), value
                    )
            lls = tuple(
                r.logprob for r in resps if isinstance(r, LoglikelihoodResult | RollingResult)
            )
            results.append(
                ItemResult(
                    doc_id=item.doc_id,
                    prompt_hash=text_hash(item.prompt),
                    loglikelihoods=lls,
                    prediction=self._prediction(doc, insts, keys, lls),
                    target=item.target,
                    metrics=metrics,
                    tags=dict(item.tags),
                )
            )
        return results

    def _prediction(
        self, doc: Any, insts: Sequence[Any], keys: Sequence[str], lls: Sequence[float]
    ) -> str | None:
        if self.output_type == "generate_until":
            return as_text(insts[0].filtered_resps[keys[0]])
        if self.output_type == "multiple_choice" and lls:
            choices = self._choices(doc)
            if choices and not getattr(self._task, "multiple_input", 0):
                scored = list(lls[: len(choices)])
                return choices[scored.index(max(scored))]
        return None
