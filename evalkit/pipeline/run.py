"""The pipeline composed: `run(config)` is plan -> execute -> score items -> aggregate ->
write, and returns what the run wrote (`ScoreRun`). `evalkit.api.score` is this with keyword
arguments; `evalkit score`, `evalkit rerun`, `evalkit sweep` and `evalkit compare` (given
checkpoints) all come here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evalkit.aggregate import aggregate
from evalkit.engine import EngineStats
from evalkit.pipeline.config import RunConfig
from evalkit.pipeline.execute import execute
from evalkit.pipeline.plan import Output, Runtime, plan
from evalkit.pipeline.routing_only import run_routing_only
from evalkit.pipeline.score_items import score_items
from evalkit.pipeline.write import build_manifest, write
from evalkit.schema import Manifest, ScoreRow, manifest_from_json


@dataclass(frozen=True)
class ScoreRun:
    """A written run: its directory, typed score rows and manifest (`manifest.config` is the
    `RunConfig` it was run from), the engine's counts and each task's truncated items."""

    path: Path
    rows: tuple[ScoreRow, ...]
    stats: EngineStats
    truncated_by_task: Mapping[str, int]
    manifest: Manifest


def run(config: RunConfig, output: Output = Output(), runtime: Runtime = Runtime()) -> ScoreRun:
    planned = plan(config, output, runtime)
    if config.routing_only:  # an MoE's routing alone: no scores (docs/moe.md)
        only = run_routing_only(planned)
        typed = manifest_from_json(only.manifest, str(only.path))
        return ScoreRun(only.path, (), only.stats, {}, typed)
    executed = execute(planned)
    scored = score_items(executed)
    rows = aggregate(executed.tasks, scored.results, planned.seed)
    manifest = build_manifest(executed, scored)
    path = write(executed, scored, rows, manifest)
    typed = manifest_from_json(manifest, str(path))
    return ScoreRun(path, rows, executed.result.stats, dict(scored.truncated), typed)
