"""The routing-only run (`--routing-only`): plan, then only the forwards an MoE's routing
statistics read (every loglikelihood and rolling request: no generation, metrics, sandbox or
result cache), then the run directory: routing.parquet, empty samples and scores tables, and
the manifest a full run would write (`evalkit.pipeline.write.build_manifest`, with the run's
`RunConfig`) less what only scoring fills in (per-task truncated and skipped item counts, the
sandbox), marked `"routing_only": true`. `evalkit.routing_run` collects the routing; this
module is the stage."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit import routing_run
from evalkit.engine import Engine, EngineOptions, EngineStats
from evalkit.errors import EvalkitError
from evalkit.frozen import freeze
from evalkit.pipeline.execute import Execution, load_model
from evalkit.pipeline.plan import Plan
from evalkit.pipeline.write import build_manifest, write_routing_only
from evalkit.requests import Generate


@dataclass(frozen=True)
class RoutingOnlyRun:
    """What a routing-only run wrote: its directory, manifest and the routed forwards' counts."""

    path: Path
    manifest: dict[str, Any]
    stats: EngineStats


def execute_routing_only(plan: Plan) -> Execution:
    """The forwards routing reads, with the router tap on; an error when there is no routing to
    collect (a dense model, `--no-routing`, the vLLM backend) or nothing to route."""
    c = plan.config
    model, load_seconds, vocab = load_model(plan)
    own = plan.checkpoint if isinstance(plan.backend, str) else None
    session = routing_run.start(model, c.routing, own)
    if session is None or session.tap is None:
        why = session.note if session is not None else "not an MoE checkpoint (no routers)"
        raise EvalkitError(f"--routing-only needs routing to collect; here it is {why}")
    requests = [
        r
        for t in plan.tasks
        for it in plan.items[t.name]
        for r in it.requests
        if not isinstance(r, Generate)  # generation is never counted (routing_run.COUNTED)
    ]
    options = EngineOptions(truncation=c.truncation, progress=plan.output.progress)  # type: ignore[arg-type]
    t_run = time.time()
    result = Engine(model, None, options).run(requests)
    run_seconds = time.time() - t_run
    frame, info = routing_run.finish(
        session,
        model,
        plan.tasks,
        plan.items,
        truncation=c.truncation,  # type: ignore[arg-type]
        provenance=plan.provenance,
        seed=plan.seed,
    )
    if frame is None or info is None:
        raise EvalkitError(
            "--routing-only: nothing to route (the tasks have no scored tokens and the "
            "checkpoint's provenance no sample documents)"
        )
    return Execution(
        plan=plan,
        model=model,
        result=result,
        tasks=plan.tasks,
        items=plan.items,
        skipped=(),
        load_seconds=load_seconds,
        run_seconds=run_seconds,
        vocabulary=freeze(vocab),
        routing_frame=frame,
        routing_info=freeze(info),
    )


def run_routing_only(plan: Plan) -> RoutingOnlyRun:
    executed = execute_routing_only(plan)
    manifest = build_manifest(executed, None)
    path = write_routing_only(executed, manifest)
    return RoutingOnlyRun(path, manifest, executed.result.stats)
