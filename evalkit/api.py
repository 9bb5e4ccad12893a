"""The Python API under the CLI: score a checkpoint, write a run directory."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit import __version__, routing_run
from evalkit.backends.base import Backend
from evalkit.backends.damage import vocabulary_facts, vocabulary_warning
from evalkit.cache import ResultCache
from evalkit.engine import Engine, EngineOptions, EngineStats, Truncation
from evalkit.errors import EvalkitError, TaskCannotRun
from evalkit.inputs import (
    check_backend_options,
    check_device,
    check_token_budget,
    check_writable_folder,
)
from evalkit.provenance import Provenance, find_provenance
from evalkit.run_facts import backend_facts
from evalkit.sandbox import MODES, Sandbox, choose
from evalkit.schema import ScoreRow, manifest_from_json
from evalkit.scoring import Score, family_scores, legacy, summary_scores, task_scores
from evalkit.skips import MANIFEST_KEY as SKIPPED_TASKS
from evalkit.skips import SuiteSkips
from evalkit.store import RUN_SCHEMA_VERSION, samples_frame, scores_frame, write_run
from evalkit.tasks.base import (
    Item,
    ItemResult,
    ScoringContext,
    Task,
    TokenizerInfo,
    WindowedTokenizer,
    responses_for,
)
from evalkit.tasks.chat import ChatFormat, chat_all, find_chat_template, template_hash
from evalkit.tasks.kinds import TaskKind, with_kinds
from evalkit.tasks.options import apply_options, apply_suite, check_generation, make_options
from evalkit.tasks.registry import load_suite, resolve_tasks

BACKENDS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class ScoreRun:
    path: Path
    scores: list[Score]
    stats: EngineStats
    truncated_by_task: dict[str, int]
    manifest: dict[str, Any]
    rows: tuple[ScoreRow, ...] = ()  # the typed rows; `scores` is their display view


def default_cache_dir() -> Path:
    env = os.environ.get("EVALKIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "evalkit"


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _hardware(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def resolve_backend(backend: str, device: str) -> str:
    """`auto` made concrete: vLLM only where it imports and a GPU is there, else transformers."""
    if backend not in BACKENDS:
        raise EvalkitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        from evalkit.backends.vllm import vllm_available

        return "vllm" if device in ("auto", "cuda") and vllm_available() else "hf"
    return backend


def load_backend(
    checkpoint: Path,
    backend: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    token_budget: int | None = None,
    tokenizer: Any = None,
    max_length: int | None = None,
    vllm_options: Sequence[str] = (),
    guard: bool = True,
    trust_remote_code: bool = False,
) -> Backend:
    backend = resolve_backend(backend, device)
    if backend == "vllm":
        from evalkit.backends.vllm import VLLMBackend, parse_options

        opts = parse_options(vllm_options, dtype)
        return VLLMBackend(
            checkpoint, options=opts, tokenizer=tokenizer, device=device, guard=guard
        )
    from evalkit.backends.hf import HFBackend

    return HFBackend(
        checkpoint,
        device=device,
        dtype=dtype,
        token_budget=token_budget,
        tokenizer=tokenizer,
        max_length=max_length,
        guard=guard,
        trust_remote_code=trust_remote_code,
    )


def _default_out(checkpoint: Path, label: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{checkpoint.resolve().name}-{label}-{stamp}"


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

    `backend` may be a name or an already-built Backend (e.g. the fake one in tests).
    `vllm_options` are `KEY=VALUE` settings of the vLLM engine (`VLLMOptions`).
    `chat_template=True` formats every prompt through the checkpoint tokenizer's chat template
    (few-shot examples as turns; see `evalkit.tasks.chat`) and records it in the manifest.
    `haystack` is a text file that the needle-in-a-haystack tasks use as their filler.
    A task that cannot run on this checkpoint is skipped with its reason (manifest
    `skipped_tasks`, see `evalkit.skips`); `strict_suite=True` makes that an error instead.
    `guard=False` skips the parity guard (HF and vLLM backends, docs/backends.md); the manifest
    says so.
    `checkpoint` may be a hub id `ORG/NAME[@REVISION]` (or `revision=`), resolved through the
    Hugging Face cache (`evalkit.hub`); `trust_remote_code` allows a checkpoint's own code.
    `num_fewshot`, `gen_kwargs` (lm-eval's `key=value,...`) and `seed` are lm-eval's options
    (`evalkit.tasks.options`). An MoE checkpoint's router decisions go to `routing.parquet`
    (`evalkit.routing_run`) unless `routing=False`; `routing_only=True` runs only the forwards
    routing needs and writes no scores. `task_kinds` adds a caller's own task
    kinds to the built-in table (`evalkit.tasks.kinds`; docs/tasks.md, "Adding a task kind").
    """
    started = time.time()
    ckpt = Path(checkpoint)
    if (suite is None) == (not tasks):
        raise EvalkitError("give exactly one of a suite or a list of tasks")
    if limit is not None and limit < 1:
        raise EvalkitError(f"--limit must be positive, got {limit}")
    if truncation not in ("error", "left"):
        raise EvalkitError(f"unknown truncation policy {truncation!r}; use 'error' or 'left'")
    if out is not None and Path(out).exists():
        raise EvalkitError(
            f"run directory already exists: {Path(out).resolve()} (runs are immutable)"
        )
    check_token_budget(token_budget)
    suite_obj = load_suite(suite) if suite is not None else None
    names = list(suite_obj.tasks) if suite_obj is not None else list(tasks or [])
    tdir = Path(tasks_dir) if tasks_dir is not None else None
    if tdir is not None and not tdir.is_dir():
        raise EvalkitError(f"tasks directory not found: {tdir}")
    # Everything about the tasks is checked before the model is loaded.
    options = make_options(num_fewshot, gen_kwargs, seed)
    task_objs = apply_options(resolve_tasks(names, tdir, with_kinds(task_kinds)), options)
    if suite_obj is not None:
        task_objs = apply_suite(task_objs, suite_obj.families, suite_obj.fewshot, options)
    bseed = 0 if seed is None else seed
    skips = SuiteSkips(strict_suite)
    try:
        code_sandbox = _code_sandbox(task_objs, sandbox)
    except TaskCannotRun as exc:
        code_sandbox = None
        task_objs = skips.drop(task_objs, [t for t in task_objs if t.needs.sandbox], exc)
    if haystack is not None:
        task_objs = _with_haystack(task_objs, Path(haystack))
    # Tasks see the model's window through the tokenizer they are given (from the config
    # before the weights load, so bad lengths fail early; the backend gets the same window).
    window: int | None = None
    text_tokenizer: Any = None
    hub: dict[str, Any] | None = None
    if isinstance(backend, str):
        from evalkit.backends.hf import checkpoint_window, load_tokenizer
        from evalkit.hub import check_remote_code, resolve_checkpoint

        resolved = resolve_checkpoint(checkpoint, revision)
        ckpt, hub = resolved.path, resolved.manifest()
        check_remote_code(ckpt, str(checkpoint), trust_remote_code)
        backend = resolve_backend(backend, device)
        check_backend_options(backend, vllm_options)
        check_device(device)
        text_tokenizer = load_tokenizer(ckpt, trust_remote_code)
        window = checkpoint_window(ckpt, text_tokenizer)
        tokenizer: TokenizerInfo = WindowedTokenizer(text_tokenizer, window)
    else:
        tokenizer = WindowedTokenizer(backend.tokenizer, backend.max_length)
    fmt = _chat_format(ckpt) if chat_template else None
    if fmt is not None and tokenizer.max_context is not None:
        # Tasks that size prompts to the window (needle tasks) must leave the template room.
        room = tokenizer.max_context - _chat_overhead(fmt, tokenizer)
        tokenizer = WindowedTokenizer(tokenizer, room)
    task_objs, items = skips.build_items(task_objs, lambda t: list(t.items(limit, tokenizer)))
    check_generation(task_objs, items, options)
    chat_info: dict[str, Any] | None = None
    if fmt is not None:
        items, single_turn = chat_all(task_objs, items, fmt)
        # Items a task gave no turns for are one user turn: said, never silent.
        chat_info = fmt.describe() | {"single_turn_items": single_turn}
    prov = None
    vocab: dict[str, int] | None = None
    if isinstance(backend, str):
        if not ckpt.exists():
            raise EvalkitError(f"checkpoint not found: {ckpt}")
        prov = find_provenance(ckpt, Path(provenance) if provenance else None)
    # Checked before the model loads: an unusable folder fails in seconds, not after the work.
    check_writable_folder(Path(out).parent if out is not None else Path("runs"), "run directory")
    cache = (
        ResultCache(Path(cache_dir or default_cache_dir()) / "results.sqlite")
        if use_cache
        else None
    )
    t_load = time.time()
    try:
        model = (
            load_backend(
                ckpt,
                backend,
                device,
                dtype,
                token_budget,
                text_tokenizer,
                window,
                vllm_options,
                guard=guard,
                trust_remote_code=trust_remote_code,
            )
            if isinstance(backend, str)
            else backend
        )
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    load_seconds = time.time() - t_load
    if isinstance(backend, str):  # said once the weights are known to match the config
        vocab = vocabulary_facts(ckpt, text_tokenizer.vocab_size)
        warning = vocabulary_warning(ckpt, vocab)
        if warning:
            print(warning, file=sys.stderr)

    engine = Engine(model, cache, EngineOptions(truncation=truncation, progress=progress))
    moe = routing_run.start(model, routing, ckpt if isinstance(backend, str) else None)
    if routing_only:  # the forwards routing reads, no scores (routing_run.routing_only)
        if cache is not None:
            cache.close()
        label = f"{suite_obj.name if suite_obj is not None else 'tasks'}-routing"
        facts = routing_run.RunFacts(
            ckpt, suite, limit, dtype, truncation, bseed, started, load_seconds, prov
        )
        dest = Path(out) if out is not None else _default_out(ckpt, label)
        path, info, stats = routing_run.routing_only(
            moe, model, task_objs, items, dest, facts, progress=progress
        )
        return ScoreRun(path, [], stats, {}, info)
    t_run = time.time()
    try:
        result, task_objs, items = skips.run(engine, task_objs, items)
    finally:
        if cache is not None:
            cache.close()
    run_seconds = time.time() - t_run
    routing_frame, routing_info = routing_run.finish(
        moe, model, task_objs, items, truncation=truncation, provenance=prov, seed=bseed
    )

    scoring_context = _scoring_context(code_sandbox, progress)
    per_task: dict[str, list[ItemResult]] = {}
    scores: list[ScoreRow] = []
    truncated: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for task in task_objs:
        # Items the backend could not feed at the model's window are left out, counted.
        its = [
            it for it in items[task.name] if not any(r.hash in result.skipped for r in it.requests)
        ]
        skipped[task.name] = len(items[task.name]) - len(its)
        if not its:
            raise EvalkitError(f"task {task.name}: the backend could score none of its items")
        responses = [responses_for(it, result.responses) for it in its]
        results = task.score_in(scoring_context, its, responses)
        cut = {r.hash for it in its for r in it.requests} & result.truncated
        truncated[task.name] = sum(1 for it in its if any(r.hash in cut for r in it.requests))
        results = [
            _mark(r, any(q.hash in cut for q in it.requests))
            for r, it in zip(results, its, strict=True)
        ]
        per_task[task.name] = results
        scores.extend(task_scores(task.name, task.family, task.metrics, results, bseed))
        scores.extend(summary_scores(task, results, bseed))
    scores.extend(family_scores(task_objs, per_task, seed=bseed))

    label = suite_obj.name if suite_obj is not None else "tasks"
    if chat_template:
        label += "-chat"
    named = Path(hub["repo_id"].replace("/", "--")) if hub else ckpt
    out_path = Path(out) if out is not None else _default_out(named, label)
    settings = dict(model.settings)
    manifest: dict[str, Any] = {
        "schema_version": RUN_SCHEMA_VERSION,
        "evalkit_version": __version__,
        "evalkit_commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "checkpoint": str(ckpt.resolve()),
        "hub": hub,
        "model_fingerprint": model.model_fingerprint,
        "tokenizer_fingerprint": model.tokenizer.fingerprint,
        "backend": model.name,
        "backend_settings": settings,
        # The fast path checked against the model's plain forward (backends/guard.py).
        "parity_guard": getattr(model, "guard_report", None),
        **backend_facts(model.name, settings, getattr(model, "token_budget", None), dtype),
        "max_length": model.max_length,
        "vocabulary": vocab,
        "hardware": _hardware(settings.get("device", "cpu")),
        "suite": suite_obj.name if suite_obj is not None else None,
        "tasks": [
            _task_entry(t, items[t.name], truncated[t.name]) | {"skipped_items": skipped[t.name]}
            for t in task_objs
        ],
        SKIPPED_TASKS: skips.to_manifest(),
        "limit": limit,
        "truncation": truncation,
        "seeds": {
            "bootstrap": bseed,
            **({"fewshot": seed, "sampling": seed} if seed is not None else {}),
        },
        "options": options.manifest(),
        "engine": {
            "requests": result.stats.requests,
            "unique": result.stats.unique,
            "reused": result.stats.reused,
            "computed": result.stats.computed,
            "truncated": result.stats.truncated,
            "skipped": result.stats.skipped,
            "scored_tokens": result.stats.scored_tokens,
        },
        "timings": {
            "load_seconds": round(load_seconds, 3),
            "run_seconds": round(run_seconds, 3),
            "total_seconds": round(time.time() - started, 3),
        },
        "provenance": prov.to_dict() if prov is not None else None,
        "chat_template": chat_info,
        "sandbox": (
            code_sandbox.isolation.manifest(code_sandbox.limits) | {"workers": code_sandbox.workers}
            if code_sandbox is not None
            else None
        ),
    }
    if routing_info is not None:
        manifest["routing"] = routing_info
    extra = {routing_run.ROUTING: routing_frame} if routing_frame is not None else None
    manifest_from_json(manifest, str(out_path))  # the writer's own check of the schema
    path = write_run(out_path, manifest, samples_frame(per_task), scores_frame(scores), extra=extra)
    shown = [legacy(r) for r in scores]
    return ScoreRun(path, shown, result.stats, truncated, manifest, tuple(scores))


def _code_sandbox(tasks: Sequence[Task], mode: str) -> Sandbox | None:
    """The sandbox for the run's code tasks (None without any), chosen before the model loads
    so `strict` fails fast; the isolation in force is said on stderr, plainly."""
    if mode not in MODES:
        raise EvalkitError(f"unknown sandbox mode {mode!r}; choose one of {', '.join(MODES)}")
    if not any(t.needs.sandbox for t in tasks):
        return None
    try:
        isolation = choose(mode)
    except EvalkitError as exc:  # no isolation here for `strict`: the code tasks cannot run
        raise TaskCannotRun(str(exc)) from None
    box = Sandbox(isolation)
    print(f"{box.isolation.describe()} [{box.workers} parallel]", file=sys.stderr)
    return box


def _scoring_context(box: Sandbox | None, progress: bool) -> ScoringContext:
    """What tasks get at scoring time: the sandbox runs the programs of tasks that need it."""
    from evalkit.sandbox.scoring import program_runner

    return ScoringContext(run_programs=program_runner(box, progress) if box else None)


def _chat_format(checkpoint: Path) -> ChatFormat:
    """The checkpoint tokenizer's chat template as a renderer (with the generation prompt)."""
    template = find_chat_template(checkpoint) if checkpoint.is_dir() else None
    if template is None:
        raise EvalkitError(
            f"{checkpoint} has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); score it without --chat-template"
        )
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    except Exception as exc:
        raise EvalkitError(f"no usable tokenizer in {checkpoint}: {exc}") from None
    tok.chat_template = template

    def render(messages: list[dict[str, str]]) -> str:
        try:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:
            raise EvalkitError(f"the chat template of {checkpoint} failed: {exc}") from None
        return str(text)

    return ChatFormat(render=render, template_hash=template_hash(template))


def _chat_overhead(fmt: ChatFormat, tokenizer: TokenizerInfo) -> int:
    """Tokens a chat template adds around one user turn (+ 1 for a merge at its edges)."""
    probe = "x"
    turns = [{"role": "system", "content": fmt.system}] if fmt.system else []
    rendered = fmt.render([*turns, {"role": "user", "content": probe}])
    return len(tokenizer.encode(rendered)) - len(tokenizer.encode_plain(probe)) + 1


def _task_entry(task: Task, items: list[Item], truncated: int) -> dict[str, Any]:
    entry = {
        "name": task.name,
        "family": task.family,
        "version": task.version,
        "source": task.source,
        "content_hash": task.content_hash(items),
        "n_items": len(items),
        "truncated_items": truncated,
    }
    entry.update(task.manifest_fields)  # lm-eval: few-shot k, groups
    notes = task.manifest_notes  # e.g. needle tasks' skipped lengths
    if notes:
        entry["notes"] = dict(notes)
    return entry


def _with_haystack(tasks: list[Task], path: Path) -> list[Task]:
    """Needle tasks over a user's text file; an error when no selected task uses one."""
    if not any(t.needs.haystack for t in tasks):
        raise EvalkitError("--haystack is for needle-in-a-haystack tasks and none is selected")
    return [t.with_haystack(path) if t.needs.haystack else t for t in tasks]


def _mark(result: ItemResult, truncated: bool) -> ItemResult:
    if not truncated:
        return result
    from dataclasses import replace

    return replace(result, truncated=True)


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
) -> Any:
    """Paired comparison of runs (or checkpoints, scored first on `suite`/`tasks`).

    The first target is the reference. A checkpoint whose tokenizer has a chat template is
    scored twice, on raw prompts and through the template (`chat=None`: when it has one;
    `chat=False`: raw only), so the report shows what tuning changed and how sensitive each task
    is to the format. Returns an `evalkit.analysis.compare.CompareReport`.
    """
    from evalkit.analysis.compare import CompareOptions, compare_runs
    from evalkit.store import is_run, read_run

    if len(targets) < 2 and not any((Path(t) / "config.json").is_file() for t in targets):
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
    paths: list[Path] = []
    names: list[str] = []
    for i, target in enumerate(targets):
        p = Path(target)
        name = labels[i] if labels and i < len(labels) else None
        if is_run(p):
            paths.append(p)
            names.append(name or p.name)
            continue
        if not (p / "config.json").is_file():
            raise EvalkitError(f"not a run directory or a checkpoint: {p}")
        if suite is None and not tasks:
            raise EvalkitError(f"{p} is a checkpoint: give --suite (or --tasks) to score it")
        has_template = find_chat_template(p) is not None
        if chat and not has_template:
            raise EvalkitError(f"{p} has no chat template to score it with")
        variants = [False, True] if (has_template if chat is None else chat) else [False]
        for templated in variants:
            label = (name or p.resolve().name) + ("+chat-template" if templated else "")
            run = score(
                p,
                suite=suite,
                tasks=tasks,
                tasks_dir=tasks_dir,
                limit=limit,
                backend=backend,
                device=device,
                dtype=dtype,
                out=base_out / f"{i}-{label}",
                cache_dir=cache_dir,
                use_cache=use_cache,
                progress=progress,
                chat_template=templated,
            )
            paths.append(run.path)
            names.append(label)
    if len(paths) < 2:
        raise EvalkitError("compare needs at least two runs or checkpoints")
    noise_runs = [read_run(q) for n in noise for q in _runs_at(n, "noise run")]
    return compare_runs(
        [read_run(q) for q in paths],
        options,
        labels=names,
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


def slice_fit(
    checkpoint: PathLike,
    *,
    provenance: PathLike | Provenance | None = None,
    max_documents: int = 200,
    backend: str | Backend = "auto",
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """Bits per byte of `checkpoint` on each slice's sample documents (Paloma-style: summed
    log-prob of whole documents over their UTF-8 bytes), for slices that list sample documents.
    """
    from evalkit.analysis.contamination import iter_documents
    from evalkit.metrics import bits_per_byte
    from evalkit.requests import RollingLoglikelihood, RollingResult

    ckpt = Path(checkpoint)
    if isinstance(provenance, Provenance):
        prov: Provenance | None = provenance
    else:
        prov = find_provenance(ckpt, Path(provenance) if provenance else None)
    if prov is None:
        raise EvalkitError(f"{ckpt} has no provenance.yaml (give --provenance FILE)")
    docs: dict[str, list[str]] = {}
    for s in prov.slices:
        if s.sample_documents is None:
            continue
        if not Path(s.sample_documents).is_file():
            raise EvalkitError(f"slice {s.name}: sample documents not found: {s.sample_documents}")
        texts: list[str] = []
        for text in iter_documents(Path(s.sample_documents)):
            if len(texts) >= max_documents:
                break
            if text.strip():
                texts.append(text)
        docs[s.name] = texts
    if not docs:
        raise EvalkitError(f"{ckpt}: no slice lists sample_documents to measure fit on")
    cache = (
        ResultCache(Path(cache_dir or default_cache_dir()) / "results.sqlite")
        if use_cache
        else None
    )
    model = load_backend(ckpt, backend, device, dtype) if isinstance(backend, str) else backend
    engine = Engine(model, cache, EngineOptions(truncation="left", progress=progress))
    requests = {name: [RollingLoglikelihood(t) for t in texts] for name, texts in docs.items()}
    try:
        result = engine.run([r for rs in requests.values() for r in rs])
    finally:
        if cache is not None:
            cache.close()
    fit: dict[str, float] = {}
    for name, rs in requests.items():
        total_lp, text = 0.0, ""
        for r in rs:
            resp = result.responses[r.hash]
            assert isinstance(resp, RollingResult)
            total_lp += resp.logprob
            text += r.text
        fit[name] = bits_per_byte(total_lp, text)
    return fit


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

    Each target is a run directory or a folder of runs. `with_slice_fit` also measures each
    run's checkpoint (from its manifest) on its slices' sample documents. Returns an
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
            ckpt = Path(str(run.manifest.get("checkpoint", "")))
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
