"""The Python API under the CLI: `score` (a keyword shim over `evalkit.pipeline`, which writes
a run directory), `rerun`, `make_report`, and the decision commands `compare`, `gate`,
`attribute` and `contamination` (`evalkit.decisions`, one module each), which read stored runs
(compare scores the checkpoints it is given through the pipeline first; attribute's slice fit
loads the model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.backends.base import Backend
from evalkit.decisions.attribute import attribute
from evalkit.decisions.compare import compare
from evalkit.decisions.contamination import contamination
from evalkit.decisions.gate import gate
from evalkit.decisions.targets import PathLike, runs_at
from evalkit.encoding import Truncation
from evalkit.errors import EvalkitError
from evalkit.pipeline.config import BACKENDS, RunConfig
from evalkit.pipeline.execute import default_cache_dir, load_backend
from evalkit.pipeline.plan import Output, Runtime, resolve_backend
from evalkit.pipeline.run import ScoreRun, run
from evalkit.pipeline.slice_fit import slice_fit
from evalkit.tasks.kinds import TaskKind
from evalkit.tasks.options import parse_gen_kwargs

__all__ = [
    "BACKENDS",
    "RunConfig",
    "ScoreRun",
    "attribute",
    "compare",
    "contamination",
    "default_cache_dir",
    "gate",
    "load_backend",
    "make_report",
    "rerun",
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
    paths = [q for r in runs for q in runs_at(r, "run")]
    return write_report(
        [read_run(q) for q in paths],
        Path(out),
        labels=labels,
        options=ReportOptions(resamples=resamples, seed=seed),
        title=title,
    )
