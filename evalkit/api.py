"""The Python API under the CLI: `score` (a keyword shim over `evalkit.pipeline`, which writes
a run directory), `rerun`, and the decision commands, which read stored runs (compare scores
the checkpoints it is given through the pipeline first; attribute's slice fit loads the model)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.backends.base import Backend
from evalkit.encoding import Truncation
from evalkit.errors import EvalkitError
from evalkit.pipeline.config import BACKENDS, RunConfig
from evalkit.pipeline.execute import default_cache_dir, load_backend
from evalkit.pipeline.plan import Output, Runtime, resolve_backend
from evalkit.pipeline.run import ScoreRun, run
from evalkit.pipeline.slice_fit import slice_fit
from evalkit.provenance import find_provenance
from evalkit.tasks.kinds import TaskKind
from evalkit.tasks.options import parse_gen_kwargs
from evalkit.tasks.registry import load_suite, resolve_tasks

__all__ = [
    "BACKENDS",
    "RunConfig",
    "ScoreRun",
    "default_cache_dir",
    "load_backend",
    "resolve_backend",
    "run",
    "score",
    "slice_fit",
]


def score(
    checkpoint: str | Path,
    *,
    suite: str | None = None,
    tasks: Sequence[str] | None = None,
    tasks_dir: str | Path | None = None,
    limit: int | None = None,
    backend: str | Backend = "auto",
    device: str = "auto",
    dtype: str = "auto",
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    truncation: Truncation = "error",
    provenance: str | Path | None = None,
    token_budget: int | None = None,
    progress: bool = True,
    chat_template: bool = False,
    sandbox: str = "auto",
    haystack: str | Path | None = None,
    vllm_options: Sequence[str] = (),
    strict_suite: bool = False,
    guard: bool = True,
    revision: str | None = None,
    trust_remote_code: bool = False,
    num_fewshot: int | None = None,
    gen_kwargs: str | dict[str, Any] | None = None,
    seed: int | None = None,
    routing: bool = True,
    task_kinds: Sequence[TaskKind] = (),
    routing_only: bool = False,
) -> ScoreRun:
    """Score `checkpoint` on a suite or a list of tasks and write an immutable run directory.

    The keyword arguments are a `RunConfig`'s fields (evalkit.pipeline.config says what each
    means) plus where the run goes (`out`, `cache_dir`, `use_cache`, `progress`); this builds
    the config and runs the pipeline (`evalkit.pipeline.run.run`), which Python callers may
    also call with a `RunConfig` directly. `backend` may also be an already-built Backend (e.g.
    the fake one in tests), `task_kinds` adds a caller's own task kinds to the built-in table
    (`evalkit.tasks.kinds`; docs/tasks.md, "Adding a task kind"). `vllm_options` are `KEY=VALUE`
    settings of the vLLM engine; `chat_template=True` formats every prompt through the
    checkpoint tokenizer's chat template; `haystack` is the filler of needle tasks. A task that
    cannot run on this checkpoint is skipped with its reason (manifest `skipped_tasks`);
    `strict_suite=True` makes that an error. `guard=False` skips the parity guard.
    `checkpoint` may be a hub id `ORG/NAME[@REVISION]` (or `revision=`). `num_fewshot`,
    `gen_kwargs` (lm-eval's `key=value,...`) and `seed` are lm-eval's options. An MoE
    checkpoint's router decisions go to `routing.parquet` unless `routing=False`;
    `routing_only=True` runs only the forwards routing needs and writes no scores.
    """
    config = RunConfig(
        checkpoint=str(checkpoint),
        suite=suite,
        tasks=tuple(tasks or ()),
        tasks_dir=None if tasks_dir is None else str(tasks_dir),
        limit=limit,
        backend=backend if isinstance(backend, str) else "auto",
        device=device,
        dtype=dtype,
        truncation=truncation,
        provenance=None if provenance is None else str(provenance),
        token_budget=token_budget,
        chat_template=chat_template,
        sandbox=sandbox,
        haystack=None if haystack is None else str(haystack),
        vllm_options=tuple(vllm_options),
        strict_suite=strict_suite,
        guard=guard,
        revision=revision,
        trust_remote_code=trust_remote_code,
        num_fewshot=num_fewshot,
        gen_kwargs=parse_gen_kwargs(gen_kwargs)
        if isinstance(gen_kwargs, str)
        else gen_kwargs or {},
        seed=seed,
        routing=routing,
        routing_only=routing_only,
    )
    output = Output(
        out=None if out is None else Path(out),
        cache_dir=None if cache_dir is None else Path(cache_dir),
        use_cache=use_cache,
        progress=progress,
    )
    runtime = Runtime(None if isinstance(backend, str) else backend, tuple(task_kinds))
    return run(config, output, runtime)


def rerun(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    **changes: Any,
) -> ScoreRun:
    """Score again the run stored at `run_dir` from its recorded `RunConfig` (optionally with
    `changes` to its settings, e.g. `device="cuda"`) into a new run directory."""
    from evalkit.pipeline.config import load_config

    config = load_config(Path(run_dir))
    if changes:
        config = config.replace(**changes)
    output = Output(
        out=None if out is None else Path(out),
        cache_dir=None if cache_dir is None else Path(cache_dir),
        use_cache=use_cache,
        progress=progress,
    )
    return run(config, output)


# -- decisions: compare and gate -------------------------------------------------------------

PathLike = str | Path


def _runs_at(path: PathLike, what: str) -> list[Path]:
    """A run directory, or every complete run under a folder (e.g. a training run's evals)."""
    from evalkit.store import is_run, list_runs

    p = Path(path)
    if is_run(p):
        return [p]
    if not p.exists():
        raise EvalkitError(f"{what} not found: {p}")
    found = list_runs(p) if p.is_dir() else []
    if not found:
        raise EvalkitError(f"{what} {p} is not a run directory and holds no runs")
    return found


def compare(
    *targets: PathLike,
    suite: str | None = None,
    tasks: Sequence[str] | None = None,
    tasks_dir: PathLike | None = None,
    limit: int | None = None,
    chat: bool | None = None,
    labels: Sequence[str] | None = None,
    out_dir: PathLike | None = None,
    backend: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    by: str | None = None,
    cluster: str | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
    level: float = 0.95,
    test: str = "auto",
    metrics: str = "primary",
    resamples: int = 2000,
    seed: int = 0,
    noise: Sequence[PathLike] = (),
    noise_last: int = 5,
    min_snr: float = 3.0,
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """Paired comparison of runs. Returns an `evalkit.analysis.compare.CompareReport`.

    The first target is the reference. The comparison reads stored runs only; a target that is
    a checkpoint is first scored through the pipeline (`evalkit.pipeline.targets`: score, then
    compare) on `suite`/`tasks` with the other run settings given here (`settings`: more
    `RunConfig` fields, e.g. `num_fewshot`), into `out_dir`. A checkpoint whose tokenizer has a
    chat template is scored twice, raw and through the template (`chat=None`: when it has one;
    `chat=False`: raw only), so the report shows what tuning changed and how sensitive each
    task is to the format. `seed` is the bootstrap's.
    """
    from evalkit.analysis.compare import CompareOptions, compare_runs
    from evalkit.pipeline.targets import Target, is_checkpoint, score_checkpoint
    from evalkit.store import is_run, read_run

    if len(targets) < 2 and not any(is_checkpoint(Path(t)) for t in targets):
        raise EvalkitError("compare needs at least two runs or checkpoints")
    options = CompareOptions(
        by=by,
        cluster=cluster,
        correction=correction,
        alpha=alpha,
        level=level,
        test=test,
        metrics=metrics,  # type: ignore[arg-type]
        resamples=resamples,
        seed=seed,
    )
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base_out = Path(out_dir) if out_dir is not None else Path("runs") / f"compare-{stamp}"
    run_settings = {
        "suite": suite,
        "tasks": tuple(tasks or ()),
        "tasks_dir": None if tasks_dir is None else str(tasks_dir),
        "limit": limit,
        "backend": backend,
        "device": device,
        "dtype": dtype,
        **(settings or {}),
    }
    output = Output(None, None if cache_dir is None else Path(cache_dir), use_cache, progress)
    found: list[Target] = []
    for i, target in enumerate(targets):
        p = Path(target)
        name = labels[i] if labels and i < len(labels) else None
        if is_run(p):
            found.append(Target(p, name or p.name))
            continue
        if not is_checkpoint(p):
            raise EvalkitError(f"not a run directory or a checkpoint: {p}")
        if suite is None and not tasks:
            raise EvalkitError(f"{p} is a checkpoint: give --suite (or --tasks) to score it")
        label = name or p.resolve().name
        found += score_checkpoint(
            p, run_settings, chat=chat, label=label, folder=base_out, prefix=f"{i}-", output=output
        )
    if len(found) < 2:
        raise EvalkitError("compare needs at least two runs or checkpoints")
    noise_runs = [read_run(q) for n in noise for q in _runs_at(n, "noise run")]
    return compare_runs(
        [read_run(t.path) for t in found],
        options,
        labels=[t.label for t in found],
        noise_runs=noise_runs,
        noise_last=noise_last,
        min_snr=min_snr,
    )


def gate(
    baseline: PathLike | Sequence[PathLike],
    candidate: PathLike | Sequence[PathLike],
    policy: PathLike | Any,
    *,
    baseline_select: str | None = None,
    baseline_last: int | None = None,
) -> Any:
    """Gate a candidate run against a baseline under a policy; returns a `GateVerdict`
    (`.outcome`, `.exit_code`, `.checks`).

    `baseline` is a run, several runs, or a folder of a training run's runs; with several,
    `baseline_select` picks `latest` (default), `mean` (item-wise mean of the last
    `baseline_last`) or `best` (per check, the best of the last `baseline_last`). Several
    candidate runs are averaged item by item.
    """
    from evalkit.analysis.gate import Policy, gate_runs, load_policy
    from evalkit.store import read_run

    def runs_of(x: PathLike | Sequence[PathLike], what: str) -> list[Path]:
        items = [x] if isinstance(x, str | Path) else list(x)
        if not items:
            raise EvalkitError(f"no {what} given")
        return [p for item in items for p in _runs_at(item, what)]

    pol = policy if isinstance(policy, Policy) else load_policy(Path(policy))
    base_runs = [read_run(p) for p in runs_of(baseline, "baseline run")]
    cand_runs = [read_run(p) for p in runs_of(candidate, "candidate run")]
    return gate_runs(
        base_runs,
        cand_runs,
        pol,
        select=baseline_select,  # type: ignore[arg-type]
        last=baseline_last,
    )


# -- reports ---------------------------------------------------------------------------------


def make_report(
    *runs: PathLike,
    out: PathLike,
    labels: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
    title: str | None = None,
) -> Any:
    """Write `out/index.html` (self-contained) and `out/report.md` for one run or several (a
    folder stands for every run under it, in path order). Several runs add trajectories over
    training and paired deltas against the first. Returns `evalkit.report.build.ReportFiles`."""
    from evalkit.report.build import write_report
    from evalkit.report.sections import ReportOptions
    from evalkit.store import read_run

    if not runs:
        raise EvalkitError("report needs at least one run")
    paths = [q for r in runs for q in _runs_at(r, "run")]
    return write_report(
        [read_run(q) for q in paths],
        Path(out),
        labels=labels,
        options=ReportOptions(resamples=resamples, seed=seed),
        title=title,
    )


# -- provenance: attribution, slice fit, contamination ----------------------------------------


def attribute(
    *runs: PathLike,
    metric: str | None = None,
    reference: str | None = None,
    ridge: float = 1e-3,
    resamples: int = 1000,
    level: float = 0.95,
    min_log_sd: float = 0.05,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    with_slice_fit: bool = False,
    slice_fit_documents: int = 200,
    device: str = "auto",
    dtype: str = "auto",
) -> Any:
    """Attribute the runs' scores to their training-data slices (`evalkit.analysis.attribute`).

    Each target is a run directory or a folder of runs, read from the store. `with_slice_fit`
    also measures each run's checkpoint (from its manifest) on its slices' sample documents:
    that loads the model again (`evalkit.pipeline.slice_fit`). Returns an
    `AttributionReport`.
    """
    from evalkit.analysis.attribute import AttributeOptions, attribute_runs
    from evalkit.analysis.compare import unique_labels
    from evalkit.provenance import manifest_provenance
    from evalkit.store import read_run

    paths = [q for t in runs for q in _runs_at(t, "run")]
    loaded = [read_run(q) for q in paths]
    options = AttributeOptions(
        metric=metric,
        reference=reference,
        ridge=ridge,
        resamples=resamples,
        level=level,
        min_log_sd=min_log_sd,
        seed=seed,
    )
    fit: dict[str, dict[str, float]] | None = None
    if with_slice_fit:
        fit = {}
        for run, label in zip(loaded, unique_labels(loaded, labels), strict=True):
            ckpt = Path(run.manifest.checkpoint)
            if not (ckpt / "config.json").is_file():
                raise EvalkitError(f"run {label}: its checkpoint {ckpt} is gone; cannot fit slices")
            fit[label] = slice_fit(
                ckpt,
                provenance=manifest_provenance(run.manifest, label),
                max_documents=slice_fit_documents,
                device=device,
                dtype=dtype,
            )
    return attribute_runs(loaded, options, labels=labels, slice_fit=fit)


def contamination(
    target: PathLike,
    *,
    suite: str | None = None,
    tasks: Sequence[str] | None = None,
    tasks_dir: PathLike | None = None,
    n: int | None = None,  # None: per benchmark (GPT-3's rule, `contamination.auto_n`)
    provenance: PathLike | None = None,
    max_documents: int | None = None,
    progress: bool = False,
) -> Any:
    """Flag the eval items of `suite`/`tasks` that overlap the training slices' sample documents
    (`evalkit.analysis.contamination`). `target` is a run directory (then scores are recomputed
    on the clean items) or a checkpoint (flags only). Returns a `ContaminationReport`.
    """
    from evalkit.analysis.contamination import EvalText, contamination_report
    from evalkit.analysis.runs import side_from_run
    from evalkit.provenance import manifest_provenance
    from evalkit.store import is_run, read_run
    from evalkit.tasks.base import text_hash

    p = Path(target)
    run = read_run(p) if is_run(p) else None
    if run is None and not (p / "config.json").is_file():
        raise EvalkitError(f"not a run directory or a checkpoint: {p}")
    if (suite is None) == (not tasks):
        raise EvalkitError("give exactly one of a suite or a list of tasks")
    if provenance is not None:
        prov = find_provenance(p, Path(provenance))
    elif run is not None:
        prov = manifest_provenance(run.manifest, p.name)
    else:
        prov = find_provenance(p, None)
    if prov is None:
        raise EvalkitError(f"{p} has no provenance (give --provenance FILE)")
    names = list(load_suite(suite).tasks) if suite is not None else list(tasks or [])
    task_objs = resolve_tasks(names, Path(tasks_dir) if tasks_dir else None)
    texts: list[EvalText] = []
    prompt_hashes: dict[tuple[str, int], str] = {}
    for task in task_objs:
        for it in task.items():
            texts.append(EvalText(task.name, it.doc_id, f"{it.prompt} {it.target}"))
            prompt_hashes[(task.name, it.doc_id)] = text_hash(it.prompt)
    warnings: list[str] = []
    scores: dict[str, tuple[str, dict[int, float]]] | None = None
    if run is not None:
        side = side_from_run(run)
        scores = {}
        for task in task_objs:
            if task.name not in side.metrics:
                warnings.append(f"run has no task {task.name}: flags only")
                continue
            metric = side.metric(task.name).name
            rows = side.samples[side.samples.task == task.name]
            values: dict[int, float] = {}
            for doc_id, ph, v in zip(rows.doc_id, rows.prompt_hash, rows[metric], strict=True):
                if prompt_hashes.get((task.name, int(doc_id))) != ph:
                    raise EvalkitError(
                        f"{task.name} item {doc_id} in run {p.name} is not the item the task "
                        "builds now (its prompt changed): rescore it"
                    )
                values[int(doc_id)] = float(v)
            scores[task.name] = (metric, values)
    slices = [(s.name, Path(s.sample_documents)) for s in prov.slices if s.sample_documents]
    missing = [s.name for s in prov.slices if not s.sample_documents]
    if missing:
        warnings.append(f"slices without sample documents, not checked: {', '.join(missing)}")
    for name, path in slices:
        if not path.is_file():
            raise EvalkitError(f"slice {name}: sample documents not found: {path}")
    return contamination_report(
        str(p), texts, slices, scores, n=n, max_documents=max_documents, warnings=warnings
    )
