"""Stage 5, write: the manifest (what ran, on what, how, with the `RunConfig` to run it again)
and the run directory, written atomically by `evalkit.store`."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit import __version__, routing_run
from evalkit.errors import EvalkitError
from evalkit.frozen import thaw
from evalkit.pipeline.execute import Execution
from evalkit.pipeline.plan import Plan
from evalkit.pipeline.score_items import ItemScores
from evalkit.run_facts import backend_facts
from evalkit.schema import ScoreRow, manifest_from_json
from evalkit.skips import MANIFEST_KEY as SKIPPED_TASKS
from evalkit.store import RUN_SCHEMA_VERSION, samples_frame, scores_frame, write_run
from evalkit.tasks.base import Item, Task


def git_commit() -> str | None:
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


def hardware(device: str) -> dict[str, Any]:
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


def run_path(plan: Plan) -> Path:
    """The run directory: the one asked for, else runs/<checkpoint>-<label>-<time>."""
    if plan.output.out is not None:
        return Path(plan.output.out)
    named = Path(str(plan.hub["repo_id"]).replace("/", "--")) if plan.hub else plan.checkpoint
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{named.resolve().name}-{plan.label}-{stamp}"


def build_manifest(execution: Execution, scored: ItemScores | None) -> dict[str, Any]:
    """manifest.json's content (schema version 3; `evalkit.schema.Manifest` reads it).
    `scored` None: a routing-only run (`evalkit.pipeline.routing_only`), which scores nothing:
    its tasks carry no truncated or skipped item counts, it has no sandbox, and it says so
    (`routing_only`)."""
    plan, model, stats = execution.plan, execution.model, execution.result.stats
    c = plan.config
    settings = dict(model.settings)
    # The run's own description, to run it again. A caller's own backend object is not a
    # setting: `backend` then says what was asked for and the manifest's `backend` what ran.
    config = c.with_absolute_paths()
    manifest: dict[str, Any] = {
        "schema_version": RUN_SCHEMA_VERSION,
        "evalkit_version": __version__,
        "evalkit_commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(),
        "checkpoint": str(plan.checkpoint.resolve()),
        "hub": thaw(plan.hub) if plan.hub else None,
        "config": config.to_dict(),
        "model_fingerprint": model.model_fingerprint,
        "tokenizer_fingerprint": model.tokenizer.fingerprint,
        "backend": model.name,
        "backend_settings": settings,
        # The fast path checked against the model's plain forward (backends/guard.py).
        "parity_guard": getattr(model, "guard_report", None),
        **backend_facts(model.name, settings, getattr(model, "token_budget", None), c.dtype),
        "max_length": model.max_length,
        "vocabulary": thaw(execution.vocabulary),
        "hardware": hardware(settings.get("device", "cpu")),
        "suite": plan.suite.name if plan.suite is not None else None,
        "tasks": [
            task_entry(t, execution.items[t.name], scored.truncated[t.name])
            | {"skipped_items": scored.skipped[t.name]}
            if scored is not None
            else task_entry(t, execution.items[t.name], None)
            for t in execution.tasks
        ],
        SKIPPED_TASKS: [s.to_dict() for s in (*plan.skipped, *execution.skipped)],
        "limit": c.limit,
        "truncation": c.truncation,
        "seeds": {
            "bootstrap": plan.seed,
            **({"fewshot": c.seed, "sampling": c.seed} if c.seed is not None else {}),
        },
        "options": plan.options.manifest(),
        "engine": {
            "requests": stats.requests,
            "unique": stats.unique,
            "reused": stats.reused,
            "computed": stats.computed,
            "truncated": stats.truncated,
            "skipped": stats.skipped,
            "scored_tokens": stats.scored_tokens,
        },
        "timings": {
            "load_seconds": round(execution.load_seconds, 3),
            "run_seconds": round(execution.run_seconds, 3),
            "total_seconds": round(time.time() - plan.started, 3),
        },
        "provenance": plan.provenance.to_dict() if plan.provenance is not None else None,
        "chat_template": thaw(plan.chat_info),
        "sandbox": (
            plan.sandbox.isolation.manifest(plan.sandbox.limits) | {"workers": plan.sandbox.workers}
            if plan.sandbox is not None and scored is not None
            else None
        ),
    }
    if scored is None:
        manifest["routing_only"] = True
    if execution.routing_info is not None:
        manifest["routing"] = thaw(execution.routing_info)
    return manifest


def task_entry(task: Task, items: Sequence[Item], truncated: int | None) -> dict[str, Any]:
    """A task's manifest entry; `truncated` None: the run scored nothing (routing only)."""
    entry: dict[str, Any] = {
        "name": task.name,
        "family": task.family,
        "version": task.version,
        "source": task.source,
        "content_hash": task.content_hash(list(items)),
        "n_items": len(items),
    }
    if truncated is not None:
        entry["truncated_items"] = truncated
    entry.update(task.manifest_fields)  # lm-eval: few-shot k, groups
    notes = task.manifest_notes  # e.g. needle tasks' skipped lengths
    if notes:
        entry["notes"] = dict(notes)
    return entry


def write(
    execution: Execution, scored: ItemScores, rows: Sequence[ScoreRow], manifest: dict[str, Any]
) -> Path:
    """The run directory, after the manifest is checked against the schema it claims."""
    out = run_path(execution.plan)
    manifest_from_json(manifest, str(out))  # the writer's own check of the schema
    frame = execution.routing_frame
    extra = {routing_run.ROUTING: frame} if frame is not None else None
    samples = samples_frame(scored.results)
    return write_run(out, manifest, samples, scores_frame(list(rows)), extra=extra)


def write_routing_only(execution: Execution, manifest: dict[str, Any]) -> Path:
    """A routing-only run's directory: routing.parquet beside empty samples and scores."""
    out = run_path(execution.plan)
    manifest_from_json(manifest, str(out))
    if execution.routing_frame is None:
        raise EvalkitError("--routing-only: no routing was collected")
    extra = {routing_run.ROUTING: execution.routing_frame}
    return write_run(out, manifest, samples_frame({}), scores_frame([]), extra=extra)
