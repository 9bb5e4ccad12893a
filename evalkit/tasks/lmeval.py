"""lm-eval tasks behind evalkit's Task interface.

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
import difflib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    Response,
    RollingLoglikelihood,
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
from evalkit.tasks.groups import GroupSpec, group_spec
from evalkit.tasks.lmeval_templates import compiled_once
from evalkit.tasks.options import RunOptions

SOURCE = "lm-eval"
DEFAULT_FAMILY = "lm-eval"
# lm_eval.defaults: simple_evaluate's default fewshot_random_seed and HFLM's max_gen_toks.
FEWSHOT_SEED = 1234
DEFAULT_MAX_GEN_TOKS = 256
# Generation kwargs that only shape sampling: harmless (ignored) under greedy decoding.
_SAMPLING_ONLY_KWARGS = frozenset({"top_p", "top_k", "min_p", "typical_p"})
_IGNORED_DIRS = frozenset({"__pycache__", ".ipynb_checkpoints"})


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    return text or type(exc).__name__


# -- loading -----------------------------------------------------------------------------------


def load_lmeval_tasks(names: Sequence[str], tasks_dir: Path | None = None) -> list[LMEvalTask]:
    """The lm-eval tasks for `names` (tasks, groups or tags; groups and tags expand to their
    tasks), in order. `tasks_dir` is a directory of lm-eval YAML searched before the registry.
    """
    if not names:
        raise EvalkitError("no lm-eval tasks given")
    if tasks_dir is not None:
        tasks_dir = Path(tasks_dir)
        if not tasks_dir.is_dir():
            raise EvalkitError(f"tasks directory not found: {tasks_dir}")
        _check_yaml_dir(tasks_dir)
    for name in names:
        if _is_yaml_path(name):
            _check_yaml_file(Path(name))
    manager = _task_manager(names, tasks_dir)

    out: list[LMEvalTask] = []
    origin: dict[str, str] = {}
    for name in names:
        entry = manager.task_index.get(name)
        if entry is None and not _is_yaml_path(name):
            raise EvalkitError(_unknown(name, manager.all_tasks, tasks_dir))
        where = f" ({entry.yaml_path})" if entry is not None and entry.yaml_path else ""
        from evalkit.tasks.lmeval_code import LMEvalCodeTask, deferred_code_eval

        try:
            # Code tasks' modules load `code_eval` at import: it must never run here.
            with deferred_code_eval():
                loaded = manager.load([name])
        except Exception as exc:
            raise EvalkitError(
                f"cannot load lm-eval task {name!r}{where}: {_first_line(exc)}"
            ) from exc
        is_collection = entry is not None and entry.kind.name in ("GROUP", "TAG")
        family = name if is_collection else DEFAULT_FAMILY
        specs = [group_spec(g) for g in (loaded.get("groups") or {}).values()]
        for task_name, task in loaded["tasks"].items():
            if task_name in origin:
                raise EvalkitError(
                    f"lm-eval task {task_name!r} is requested twice "
                    f"(by {origin[task_name]!r} and by {name!r})"
                )
            origin[task_name] = name
            mine = tuple(g for g in specs if task_name in g.leaves)
            cls = LMEvalCodeTask if getattr(task, "UNSAFE_CODE", False) else LMEvalTask
            out.append(cls(task, family=family, groups=mine))
    return out


def _is_yaml_path(name: str) -> bool:
    path = Path(name)
    return path.suffix in (".yaml", ".yml") and path.is_file()


def _unknown(name: str, known: Sequence[str], tasks_dir: Path | None) -> str:
    where = "lm-eval's registry" + (f" and {tasks_dir}" if tasks_dir is not None else "")
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.8)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "`lm-eval ls tasks` lists the registry; pass --tasks-dir for your own lm-eval YAML"
    return f"unknown task {name!r}: {where} has no task, group or tag of that name ({hint})"


def _yaml_files(root: Path) -> list[Path]:
    # The files lm-eval's TaskIndex walks.
    return sorted(
        (p for p in root.glob("**/*.yaml") if not _IGNORED_DIRS.intersection(p.parts)),
        key=lambda p: p.as_posix(),
    )


def _check_yaml_file(path: Path) -> dict[str, Any] | None:
    """Parse one YAML file the way lm-eval's index does (includes resolved, `!function` left
    unresolved). lm-eval skips a file it cannot parse without a word; evalkit names it."""
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        if not path.read_text(encoding="utf-8").strip():
            return None
        cfg = load_yaml(path, resolve_func=False, recursive=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise EvalkitError(f"malformed lm-eval task YAML {path}: invalid YAML{at}") from None
    except Exception as exc:
        raise EvalkitError(f"malformed lm-eval task YAML {path}: {_first_line(exc)}") from None
    return cfg if isinstance(cfg, dict) else None


def _check_yaml_dir(root: Path) -> None:
    defined: dict[str, Path] = {}
    for path in _yaml_files(root):
        cfg = _check_yaml_file(path)
        if cfg is None:
            continue
        key = "group" if "group" in cfg else "task"
        name = cfg.get(key)
        if not isinstance(name, str):
            continue  # an include template, a native evalkit spec, a suite...
        if name in defined:
            raise EvalkitError(f"duplicate lm-eval {key} name {name!r}: {defined[name]} and {path}")
        defined[name] = path


def _task_manager(names: Sequence[str], tasks_dir: Path | None) -> Any:
    """A TaskManager over `tasks_dir` alone when it defines everything asked for (indexing
    lm-eval's whole registry takes seconds), else over the registry plus `tasks_dir`."""
    from lm_eval.tasks import TaskManager

    if tasks_dir is None:
        return _registry_manager()
    local = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    index = local.task_index
    if all(_self_contained(name, index, set()) for name in names):
        return local
    return TaskManager(include_path=str(tasks_dir))


# The one TaskManager over lm-eval's own registry, made on first use (see _registry_manager).
_REGISTRY: dict[str, Any] = {}


def _registry_manager() -> Any:
    """lm-eval's own registry, indexed once a process: the index parses its ~14,000 YAML files
    (tens of seconds on a loaded 2-core machine), which a training loop or a session scoring
    lm-eval tasks again and again paid on every call. The installed registry does not change
    under a running process and loading reads the index without writing it (configs are
    deep-copied), so one index serves every call. A user's `tasks_dir` can change between
    calls: never cached."""
    if "manager" not in _REGISTRY:
        from lm_eval.tasks import TaskManager

        _REGISTRY["manager"] = TaskManager()
    return _REGISTRY["manager"]


def _self_contained(name: str, index: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether `name` and everything it refers to resolve within `index` (so that adding the
    registry would not change what it loads)."""
    entry = index.get(name)
    if entry is None:
        return False
    if name in seen or entry.kind.name != "GROUP":
        return True
    seen.add(name)
    members = (entry.cfg or {}).get("task")
    return _members_contained(members, index, seen)


def _members_contained(members: Any, index: Mapping[str, Any], seen: set[str]) -> bool:
    if not isinstance(members, list):
        return True
    for m in members:
        if isinstance(m, str):
            ok = _self_contained(m, index, seen)
        elif isinstance(m, dict) and isinstance(m.get("group"), str):
            g = m["group"]
            ok = (
                _self_contained(g, index, seen)
                if g in index
                else _members_contained(m.get("task"), index, seen)
            )
        elif isinstance(m, dict) and isinstance(m.get("task"), str):
            ok = _self_contained(m["task"], index, seen)
        else:
            ok = False
        if not ok:
            return False
    return True


# -- requests ----------------------------------------------------------------------------------


def _generate_request(task_name: str, context: str, gen_kwargs: Mapping[str, Any]) -> Generate:
    """lm-eval's `generate_until` arguments as a Generate request, normalized as lm-eval's
    backends normalize them (`normalize_gen_kwargs`: max-token aliases, do_sample/temperature)."""
    from lm_eval.models.utils import normalize_gen_kwargs

    try:
        kw = dict(normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_MAX_GEN_TOKS))
    except (TypeError, ValueError) as exc:
        raise EvalkitError(
            f"task {task_name}: bad generation_kwargs {dict(gen_kwargs)!r}: {_first_line(exc)}"
        ) from None
    until = tuple(str(s) for s in kw.pop("until"))
    max_tokens = int(kw.pop("max_gen_toks"))
    do_sample = bool(kw.pop("do_sample", False))
    temperature = float(kw.pop("temperature", 0.0) or 0.0)
    sampled = do_sample and temperature > 0
    rest = set(kw) - (set() if sampled else _SAMPLING_ONLY_KWARGS)
    if rest:
        raise EvalkitError(
            f"task {task_name}: generation_kwargs {sorted(rest)} are not supported by evalkit's "
            "engine (it decodes greedily, or samples at a temperature from the full distribution)"
        )
    return Generate(
        prompt=context,
        stop=until,
        max_tokens=max_tokens,
        temperature=temperature if sampled else 0.0,
    )


def _to_request(task_name: str, inst: Any, seed: int = 0) -> Request:
    args = inst.args
    kind = inst.request_type
    if any(isinstance(a, dict) for a in args[2:]) or (kind == "loglikelihood" and len(args) != 2):
        raise EvalkitError(f"task {task_name}: multimodal requests are not supported")
    if kind == "loglikelihood":
        return Loglikelihood(context=str(args[0]), continuation=str(args[1]))
    if kind == "loglikelihood_rolling":
        return RollingLoglikelihood(text=str(args[0]))
    if kind == "generate_until":
        request = _generate_request(task_name, str(args[0]), args[1])
        repeats = int(inst.repeats or 1)
        if repeats > 1 and request.temperature > 0:
            # lm-eval samples `repeats` times; a greedy request is answered once and repeated.
            return Generate(
                prompt=request.prompt,
                stop=request.stop,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                n=repeats,
                seed=seed,
            )
        return dataclasses.replace(request, seed=seed) if request.temperature > 0 else request
    raise EvalkitError(f"task {task_name}: unsupported lm-eval request type {kind!r}")


def _lm_resps(request: Request, response: Response, repeats: int) -> list[Any]:
    """An instance's `resps`, as lm-eval's evaluator fills them from its LM's answers."""
    if isinstance(request, Loglikelihood) and isinstance(response, LoglikelihoodResult):
        return [(float(response.logprob), bool(response.is_greedy))] * repeats
    if isinstance(request, RollingLoglikelihood) and isinstance(response, RollingResult):
        return [float(response.logprob)] * repeats
    if isinstance(request, Generate) and isinstance(response, GenerateResult):
        texts = list(response.texts)
        if len(texts) == repeats:
            return texts
        if len(texts) == 1:
            return texts * repeats
        raise ValueError(f"{len(texts)} generations for a request repeated {repeats} times")
    raise TypeError(f"a {type(response).__name__} does not answer a {request.kind} request")


# -- scores ------------------------------------------------------------------------------------


class _Aggregate:
    """lm-eval's aggregation function as a MetricSpec aggregate (picklable)."""

    def __init__(self, fn: Callable[[list[Any]], Any]) -> None:
        self.fn = fn

    def __call__(self, values: Sequence[MetricValue]) -> float:
        return float(self.fn(list(values)))


def _number(x: Any) -> float:
    if isinstance(x, str | bytes) or not hasattr(x, "__float__"):
        raise TypeError(type(x).__name__)
    return float(x)


def _metric_value(task_name: str, metric: str, value: Any) -> MetricValue:
    try:
        if isinstance(value, tuple | list):
            return tuple(_number(v) for v in value)
        return _number(value)
    except (TypeError, ValueError):
        raise EvalkitError(
            f"task {task_name}: metric {metric!r} gives per-item values of type "
            f"{type(value).__name__}, which evalkit cannot store (numbers or flat tuples of "
            "numbers only)"
        ) from None


def _as_text(filtered: Any) -> str:
    if isinstance(filtered, str):
        return filtered
    if isinstance(filtered, list | tuple) and filtered and isinstance(filtered[0], str):
        return filtered[0]
    return str(filtered)


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
                        aggregate=_Aggregate(fn),
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
                f"task {self.name}: lm-eval cannot build its requests: {_first_line(exc)}"
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
        return tuple(_to_request(self.name, inst, self._sample_seed) for inst in insts)

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
                mine.resps = _lm_resps(request, response, int(inst.repeats or 1))
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
                    metrics[self._metric_key(str(metric), key, keys)] = _metric_value(
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
            return _as_text(insts[0].filtered_resps[keys[0]])
        if self.output_type == "multiple_choice" and lls:
            choices = self._choices(doc)
            if choices and not getattr(self._task, "multiple_input", 0):
                scored = list(lls[: len(choices)])
                return choices[scored.index(max(scored))]
        return None
