"""Routing statistics of an MoE run: tap the router during scoring, map units to items, and
build `routing.parquet` and the manifest's `routing` field (`evalkit.analysis.routing`).

An MoE checkpoint is detected from its loaded model (router modules) on the HF backend; no
flag is needed and `--no-routing` skips it.

Cache hits, one rule: the result cache holds scores, never routing, so every request the cache
answered is scored again with the tap on and no cache, after the run, and counted
(`recomputed_requests`, `recompute_seconds` in the manifest; both 0 on a cold run). Routing
thus always comes from a forward of this model in this run, and a warm run's table equals a
cold run's; the price is the forwards the cache saved. The vLLM backend does not expose router
decisions: the manifest says so for an MoE config. Each provenance slice with sample documents
is routed too (its first `SLICE_DOCUMENTS` documents as rolling texts), the documents
`evalkit slice-fit` reads.

`--routing-only` runs just the forwards routing reads (`evalkit.pipeline.routing_only`, the
stage that runs and writes it); this module only collects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.analysis.routing import ROUTING, RoutedItem, routing_table
from evalkit.backends.base import Backend
from evalkit.backends.routing import RouterTap
from evalkit.encoding import Truncation
from evalkit.engine import Engine, EngineOptions
from evalkit.provenance import Provenance
from evalkit.requests import Request, RollingLoglikelihood
from evalkit.tasks.base import Item, Task

SLICE_DOCUMENTS = 32
VLLM_NOTE = "not collected: the vLLM backend does not expose router decisions (use --backend hf)"
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
# What is counted, for the manifest (one line; docs/moe.md has the details).
COUNTED = "top-k experts at every position that predicts a scored token, per continuation"


@dataclass(frozen=True)
class RoutingSession:
    tap: RouterTap | None
    note: str | None  # why nothing is collected (None: collecting)
    started: float


def is_moe_config(checkpoint: Path) -> bool:
    try:
        cfg = json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError):
        return False
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    return any(isinstance(cfg.get(k), int) and cfg.get(k, 0) > 1 for k in EXPERT_KEYS)


def start(model: Backend, enabled: bool, checkpoint: Path | None) -> RoutingSession | None:
    """Attach a router tap to `model` when it is an MoE on a backend that exposes routing.
    None: nothing to say (a dense model)."""
    now = time.time()
    moe_config = checkpoint is not None and is_moe_config(checkpoint)
    if not hasattr(model, "routing"):
        if model.name == "vllm" and moe_config:
            return RoutingSession(None, VLLM_NOTE, now)
        return None
    tap = RouterTap.attach(getattr(model, "model"))  # noqa: B009 - HF backends only
    if tap is None:
        if moe_config:
            return RoutingSession(None, "not collected: no router modules found in the model", now)
        return None
    if not enabled:
        tap.close()
        return RoutingSession(None, "off (--no-routing)", now)
    model.routing = tap
    return RoutingSession(tap, None, now)


def _labels(task: Task, item: Item) -> dict[str, str]:
    out = {"family": task.family, "task": task.name}
    for name, value in item.tags:
        if name in ("family", "task"):
            continue  # already groupings of their own
        if isinstance(value, str | int | bool):
            out[f"tag:{name}"] = str(value)
    return out


def _sum_units(tap: RouterTap, units: Sequence[tuple[Any, Any]]) -> Any:
    total = None
    for u in units:
        c = tap.counts[u]
        total = c.copy() if total is None else total + c
    return total


def _recompute(
    tap: RouterTap,
    model: Backend,
    requests: Sequence[Request],
    truncation: Truncation,
    units: Mapping[str, Sequence[Any]] | None = None,
) -> int:
    """Score again (no cache) the requests whose units the tap has not seen (the cache hits);
    their count. `units`: the requests' units if already planned (planning is not free)."""
    engine = Engine(model, None, EngineOptions(truncation=truncation, progress=False))
    if units is None:
        units = engine.units(requests)
    missing = {
        r.hash: r for r in requests if any(u not in tap.counts for u in units.get(r.hash, ()))
    }
    if missing:
        engine.run(list(missing.values()))
    return len(missing)


def slice_documents(prov: Provenance | None, limit: int = SLICE_DOCUMENTS) -> dict[str, list[str]]:
    from evalkit.analysis.contamination import iter_documents

    docs: dict[str, list[str]] = {}
    for s in prov.slices if prov is not None else ():
        if s.sample_documents is None or not Path(s.sample_documents).is_file():
            continue
        texts: list[str] = []
        for text in iter_documents(Path(s.sample_documents)):
            if len(texts) >= limit:
                break
            if text.strip():
                texts.append(text)
        if texts:
            docs[s.name] = texts
    return docs


def finish(
    session: RoutingSession | None,
    model: Backend,
    tasks: Sequence[Task],
    items: Mapping[str, Sequence[Item]],
    *,
    truncation: Truncation = "error",
    provenance: Provenance | None = None,
    seed: int = 0,
) -> tuple[Any, dict[str, Any] | None]:
    """(routing table or None, manifest field or None) once the run's scoring is done."""
    if session is None:
        return None, None
    if session.tap is None:
        return None, {"status": session.note}
    tap = session.tap
    began = time.time()
    try:
        requests = [r for t in tasks for it in items[t.name] for r in it.requests]
        planner = Engine(model, None, EngineOptions(truncation=truncation, progress=False))
        units_of = planner.units(requests)
        t_again = time.time()
        scored = [r for r in requests if units_of.get(r.hash)]
        recomputed = _recompute(tap, model, scored, truncation, units_of)
        recompute_seconds = time.time() - t_again
        routed: list[RoutedItem] = []
        for t in tasks:
            for it in items[t.name]:
                units = [u for r in it.requests for u in units_of.get(r.hash, ())]
                if units and all(u in tap.counts for u in units):
                    routed.append(RoutedItem(_labels(t, it), _sum_units(tap, units)))
        table = routing_table(routed, tap.layers, scope="items", seed=seed)
        docs = slice_documents(provenance)
        n_docs = 0
        if docs:
            slice_req = {
                name: [RollingLoglikelihood(x) for x in texts] for name, texts in docs.items()
            }
            flat = [r for rs in slice_req.values() for r in rs]
            doc_units = planner.units(flat)
            # Never cached: the run did not score them.
            _recompute(tap, model, flat, "left", doc_units)
            slice_items = [
                RoutedItem({"slice": name}, _sum_units(tap, doc_units[r.hash]))
                for name, rs in slice_req.items()
                for r in rs
            ]
            n_docs = len(slice_items)
            import pandas as pd

            table = pd.concat(
                [table, routing_table(slice_items, tap.layers, scope="slices", seed=seed)],
                ignore_index=True,
            )
    finally:
        tap.close()
        model.routing = None  # type: ignore[attr-defined]
    if not routed and not n_docs:
        return None, {"status": "not collected: the run scored no tokens (generation only)"}
    info = {
        "status": "collected",
        "file": ROUTING,
        "layers": list(tap.layers),
        "experts": tap.n_experts,
        "top_k": tap.top_k,
        "counted": COUNTED,
        "items": len(routed),
        "slice_documents": n_docs,
        # Cache hits scored again for their routing (the module docstring's rule).
        "recomputed_requests": recomputed,
        "recompute_seconds": round(recompute_seconds, 3),
        # Recompute, slice documents and statistics; the hooks' share of scoring is
        # benchmarks/routing_overhead.py.
        "seconds": round(time.time() - began, 3),
    }
    return table, info
