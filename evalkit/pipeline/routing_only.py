"""The routing-only run (`--routing-only`): plan, then only the forwards an MoE's routing
statistics read (no generation, metrics, sandbox or result cache), then routing.parquet and
a manifest with the run's `RunConfig`. `evalkit.routing_run.routing_only` does the work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalkit import routing_run
from evalkit.engine import EngineStats
from evalkit.pipeline.execute import load_model
from evalkit.pipeline.plan import Plan
from evalkit.pipeline.write import run_path


def run_routing_only(plan: Plan) -> tuple[Path, dict[str, Any], EngineStats]:
    """(run directory, manifest, engine stats of the routed forwards)."""
    c = plan.config
    model, load_seconds, _ = load_model(plan)
    own = plan.checkpoint if isinstance(plan.backend, str) else None
    session = routing_run.start(model, c.routing, own)
    facts = routing_run.RunFacts(
        plan.checkpoint,
        c.suite,
        c.limit,
        c.dtype,
        c.truncation,  # type: ignore[arg-type]
        plan.seed,
        plan.started,
        load_seconds,
        plan.provenance,
        config=c.with_absolute_paths().to_dict(),
    )
    return routing_run.routing_only(
        session,
        model,
        plan.tasks,
        plan.items,
        run_path(plan),
        facts,
        progress=plan.output.progress,
    )
