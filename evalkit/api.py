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
from evalkit.scoring import Score, task_scores
from evalkit.store import RUN_SCHEMA_VERSION, samples_frame, scores_frame, write_run
from evalkit.tasks.base import Item, ItemResult, Task, responses_for
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
) -> Backend:
    if backend not in BACKENDS:
        raise EvalkitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "vllm":
        raise EvalkitError(
            "the vLLM backend is not available in this evalkit yet; use --backend hf"
        )
    from evalkit.backends.hf import HFBackend

    return HFBackend(checkpoint, device=device, dtype=dtype, token_budget=token_budget)


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
) -> ScoreRun:
    """Score `checkpoint` on a suite or a list of tasks and write an immutable run directory.

    `backend` may be a name or an already-built Backend (e.g. the fake one in tests).
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
    items: dict[str, list[Item]] = {t.name: list(t.items(limit)) for t in task_objs}
    for name, its in items.items():
        if not its:
            raise EvalkitError(f"task {name} has no items")
    prov = None
    if isinstance(backend, str):
        if not ckpt.exists():
            raise EvalkitError(f"checkpoint not found: {ckpt}")
        prov = find_provenance(ckpt, Path(provenance) if provenance else None)
    t_load = time.time()
    model = (
        load_backend(ckpt, backend, device, dtype, token_budget)
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

    label = suite_obj.name if suite_obj is not None else "tasks"
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
    }
    path = write_run(out_path, manifest, samples_frame(per_task), scores_frame(scores))
    return ScoreRun(path, scores, result.stats, truncated, manifest)


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
