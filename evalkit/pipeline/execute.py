"""Stage 2, execute: load the backend, run every request of the plan through the engine (with
the result cache), and collect an MoE checkpoint's routing. The only stage that touches the
model."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit import routing_run
from evalkit.backends.base import Backend
from evalkit.backends.damage import vocabulary_facts, vocabulary_warning
from evalkit.cache import ResultCache
from evalkit.engine import Engine, EngineOptions, EngineResult
from evalkit.frozen import freeze
from evalkit.pipeline.plan import Plan, resolve_backend
from evalkit.skips import Items, SkippedTask, run_fitting
from evalkit.tasks.base import Task


@dataclass(frozen=True)
class Execution:
    """The engine's responses for the plan's tasks (less those skipped while running:
    `skipped`), the backend that produced them, and what the manifest says about it."""

    plan: Plan
    model: Backend
    result: EngineResult
    tasks: tuple[Task, ...]
    items: Items
    skipped: tuple[SkippedTask, ...]
    load_seconds: float
    run_seconds: float
    vocabulary: Mapping[str, int] | None
    routing_frame: Any  # pandas.DataFrame or None
    routing_info: Mapping[str, Any] | None


def default_cache_dir() -> Path:
    env = os.environ.get("EVALKIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "evalkit"


def open_cache(cache_dir: Path | str | None, use_cache: bool) -> ResultCache | None:
    if not use_cache:
        return None
    return ResultCache(Path(cache_dir or default_cache_dir()) / "results.sqlite")


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
        from evalkit.backends.vllm import VLLMBackend
        from evalkit.backends.vllm_options import parse_options

        opts = parse_options(vllm_options, dtype)
        return VLLMBackend(
            checkpoint,
            options=opts,
            tokenizer=tokenizer,
            device=device,
            guard=guard,
            trust_remote_code=trust_remote_code,
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


def load_model(plan: Plan) -> tuple[Backend, float, Mapping[str, int] | None]:
    """The plan's backend, loaded (or the caller's own): (backend, load seconds, vocabulary
    facts of a checkpoint, said once the weights are known to match the config)."""
    c = plan.config
    t_load = time.time()
    if not isinstance(plan.backend, str):
        return plan.backend, time.time() - t_load, None
    model = load_backend(
        plan.checkpoint,
        plan.backend,
        c.device,
        c.dtype,
        c.token_budget,
        plan.text_tokenizer,
        plan.window,
        c.vllm_options,
        guard=c.guard,
        trust_remote_code=c.trust_remote_code,
    )
    load_seconds = time.time() - t_load
    vocab = vocabulary_facts(plan.checkpoint, plan.text_tokenizer.vocab_size)
    warning = vocabulary_warning(plan.checkpoint, vocab)
    if warning:
        print(warning, file=sys.stderr)
    return model, load_seconds, vocab


def execute(plan: Plan) -> Execution:
    c, out = plan.config, plan.output
    cache = open_cache(out.cache_dir, out.use_cache)
    try:
        model, load_seconds, vocab = load_model(plan)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    options = EngineOptions(truncation=c.truncation, progress=out.progress)  # type: ignore[arg-type]
    engine = Engine(model, cache, options)
    own = plan.checkpoint if isinstance(plan.backend, str) else None
    moe = routing_run.start(model, c.routing, own)
    t_run = time.time()
    try:
        result, tasks, items, skipped = run_fitting(
            engine, plan.tasks, plan.items, c.strict_suite, plan.skipped
        )
    finally:
        if cache is not None:
            cache.close()
    run_seconds = time.time() - t_run
    frame, info = routing_run.finish(
        moe,
        model,
        tasks,
        items,
        truncation=c.truncation,  # type: ignore[arg-type]
        provenance=plan.provenance,
        seed=plan.seed,
    )
    return Execution(
        plan=plan,
        model=model,
        result=result,
        tasks=tasks,
        items=items,
        skipped=skipped,
        load_seconds=load_seconds,
        run_seconds=run_seconds,
        vocabulary=freeze(vocab),
        routing_frame=frame,
        routing_info=freeze(info),
    )
