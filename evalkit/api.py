"""The Python API under the CLI: score a checkpoint, write a run directory."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit import __version__
from evalkit.backends.base import Backend
from evalkit.cache import ResultCache
from evalkit.engine import Engine, EngineOptions, EngineStats, Truncation
from evalkit.errors import ContextTooLongError, EvalkitError
from evalkit.provenance import find_provenance
from evalkit.scoring import Score, family_scores, summary_scores, task_scores
from evalkit.store import RUN_SCHEMA_VERSION, samples_frame, scores_frame, write_run
from evalkit.tasks.base import Item, ItemResult, Task, TokenizerInfo, responses_for
from evalkit.tasks.chat import ChatFormat, chat_items, find_chat_template, template_hash
from evalkit.tasks.registry import load_suite, resolve_tasks

BACKENDS = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class ScoreRun:
    path: Path
    scores: list[Score]
    stats: EngineStats
    truncated_by_task: dict[str, int]
    manifest: dict[str, Any]


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


def load_backend(
    checkpoint: Path,
    backend: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    token_budget: int | None = None,
    tokenizer: Any = None,
    vllm_options: Sequence[str] = (),
) -> Backend:
    if backend not in BACKENDS:
        raise EvalkitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        from evalkit.backends.vllm import vllm_available

        # vLLM only where it imports and a GPU is there; transformers everywhere else.
        backend = "vllm" if device in ("auto", "cuda") and vllm_available() else "hf"
    if backend == "vllm":
        from evalkit.backends.vllm import VLLMBackend, parse_options

        if device not in ("auto", "cuda"):
            raise EvalkitError(f"the vLLM backend runs on the GPU only, not on {device!r}")
        opts = parse_options(vllm_options, dtype)
        return VLLMBackend(checkpoint, options=opts, tokenizer=tokenizer)
    from evalkit.backends.hf import HFBackend

    return HFBackend(
        checkpoint, device=device, dtype=dtype, token_budget=token_budget, tokenizer=tokenizer
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
    vllm_options: Sequence[str] = (),
) -> ScoreRun:
    """Score `checkpoint` on a suite or a list of tasks and write an immutable run directory.

    `backend` may be a name or an already-built Backend (e.g. the fake one in tests).
    `vllm_options` are `KEY=VALUE` settings of the vLLM engine (`VLLMOptions`).
    `chat_template=True` formats every prompt through the checkpoint tokenizer's chat template
    (few-shot examples as turns; see `evalkit.tasks.chat`) and records it in the manifest.
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
    suite_obj = load_suite(suite) if suite is not None else None
    names = list(suite_obj.tasks) if suite_obj is not None else list(tasks or [])
    tdir = Path(tasks_dir) if tasks_dir is not None else None
    if tdir is not None and not tdir.is_dir():
        raise EvalkitError(f"tasks directory not found: {tdir}")
    # Everything about the tasks is checked before the model is loaded.
    task_objs = resolve_tasks(names, tdir)
    if isinstance(backend, str):
        from evalkit.backends.hf import load_tokenizer

        tokenizer: TokenizerInfo = load_tokenizer(ckpt)
    else:
        tokenizer = backend.tokenizer
    items: dict[str, list[Item]] = {t.name: list(t.items(limit, tokenizer)) for t in task_objs}
    for name, its in items.items():
        if not its:
            raise EvalkitError(f"task {name} has no items")
    chat_info: dict[str, Any] | None = None
    if chat_template:
        fmt = _chat_format(ckpt)
        items = {t.name: chat_items(t, items[t.name], fmt) for t in task_objs}
        chat_info = fmt.describe()
    prov = None
    if isinstance(backend, str):
        if not ckpt.exists():
            raise EvalkitError(f"checkpoint not found: {ckpt}")
        prov = find_provenance(ckpt, Path(provenance) if provenance else None)
    t_load = time.time()
    model = (
        load_backend(ckpt, backend, device, dtype, token_budget, tokenizer, vllm_options)
        if isinstance(backend, str)
        else backend
    )
    load_seconds = time.time() - t_load

    cache = None
    if use_cache:
        cache = ResultCache(Path(cache_dir or default_cache_dir()) / "results.sqlite")
    engine = Engine(model, cache, EngineOptions(truncation=truncation, progress=progress))
    all_requests = [r for its in items.values() for it in its for r in it.requests]
    t_run = time.time()
    try:
        result = engine.run(all_requests)
    except ContextTooLongError as exc:
        raise ContextTooLongError(_locate(str(exc), items)) from None
    finally:
        if cache is not None:
            cache.close()
    run_seconds = time.time() - t_run

    per_task: dict[str, list[ItemResult]] = {}
    scores: list[Score] = []
    truncated: dict[str, int] = {}
    for task in task_objs:
        its = items[task.name]
        responses = [responses_for(it, result.responses) for it in its]
        results = task.score(its, responses)
        cut = {r.hash for it in its for r in it.requests} & result.truncated
        truncated[task.name] = sum(1 for it in its if any(r.hash in cut for r in it.requests))
        results = [
            _mark(r, any(q.hash in cut for q in it.requests))
            for r, it in zip(results, its, strict=True)
        ]
        per_task[task.name] = results
        scores.extend(task_scores(task.name, task.family, task.metrics, results))
        scores.extend(summary_scores(task, results))
    scores.extend(family_scores(task_objs, per_task))

    label = suite_obj.name if suite_obj is not None else "tasks"
    if chat_template:
        label += "-chat"
    out_path = Path(out) if out is not None else _default_out(ckpt, label)
    settings = dict(model.settings)
    manifest: dict[str, Any] = {
        "schema_version": RUN_SCHEMA_VERSION,
        "evalkit_version": __version__,
        "evalkit_commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "checkpoint": str(ckpt.resolve()),
        "model_fingerprint": model.model_fingerprint,
        "tokenizer_fingerprint": model.tokenizer.fingerprint,
        "backend": model.name,
        "backend_settings": settings,
        "dtype": settings.get("dtype"),
        "max_length": model.max_length,
        "hardware": _hardware(settings.get("device", "cpu")),
        "suite": suite_obj.name if suite_obj is not None else None,
        "tasks": [_task_entry(t, items[t.name], truncated[t.name]) for t in task_objs],
        "limit": limit,
        "truncation": truncation,
        "seeds": {"bootstrap": 0},
        "engine": {
            "requests": result.stats.requests,
            "unique": result.stats.unique,
            "reused": result.stats.reused,
            "computed": result.stats.computed,
            "truncated": result.stats.truncated,
            "scored_tokens": result.stats.scored_tokens,
        },
        "timings": {
            "load_seconds": round(load_seconds, 3),
            "run_seconds": round(run_seconds, 3),
            "total_seconds": round(time.time() - started, 3),
        },
        "provenance": prov,
        "chat_template": chat_info,
    }
    path = write_run(out_path, manifest, samples_frame(per_task), scores_frame(scores))
    return ScoreRun(path, scores, result.stats, truncated, manifest)


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


def _task_entry(task: Task, items: list[Item], truncated: int) -> dict[str, Any]:
    return {
        "name": task.name,
        "family": task.family,
        "version": task.version,
        "source": task.source,
        "content_hash": task.content_hash(items),
        "n_items": len(items),
        "truncated_items": truncated,
    }


def _mark(result: ItemResult, truncated: bool) -> ItemResult:
    if not truncated:
        return result
    from dataclasses import replace

    return replace(result, truncated=True)


def _locate(message: str, items: dict[str, list[Item]]) -> str:
    """Name the task and document behind a request-hash error message."""
    for task, its in items.items():
        for it in its:
            for r in it.requests:
                if r.hash[:12] in message:
                    return f"task {task} doc {it.doc_id}: {message.replace(f'request {r.hash[:12]} ', '')}"
    return message


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
