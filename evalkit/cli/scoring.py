"""The commands that run the model: `score`, `rerun` (a stored run's config again) and
`sweep` (many checkpoints on Ray). Each builds one RunConfig from the shared run options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.common import (
    CacheDirOption,
    LogDirOption,
    LogOption,
    NoCacheOption,
    OutOption,
    ProgressOption,
    fail,
    log_to_tracker,
    write,
)
from evalkit.cli_options import RunOptions, run_options
from evalkit.errors import EvalkitError
from evalkit.pipeline.config import RunConfig

_CONFIG_HELP = (
    "Run config: a YAML file of settings (RunConfig's fields), or a run's manifest.json (or its "
    "directory) to score it again; run options given here change it."
)


@run_options()
def score(
    checkpoint: Annotated[
        str | None,
        typer.Argument(
            help="Checkpoint directory (Hugging Face layout) or hub id ORG/NAME[@REVISION] "
            "(optional with --config)."
        ),
    ] = None,
    *,
    run: RunOptions,
    config: Annotated[Path | None, typer.Option("--config", help=_CONFIG_HELP)] = None,
    out: OutOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    progress: ProgressOption = True,
    log: LogOption = None,
    log_dir: LogDirOption = None,
) -> None:
    """Score CHECKPOINT on a suite or tasks; write a run directory and print scores with 95% CIs."""
    try:
        settings = run.config(checkpoint, config)
    except EvalkitError as exc:
        fail(str(exc))
    _score(settings, out, cache_dir, no_cache, progress, log, log_dir)


@run_options()
def rerun(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory whose manifest records its config.")
    ],
    *,
    run: RunOptions,
    out: OutOption = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    progress: ProgressOption = True,
    log: LogOption = None,
    log_dir: LogDirOption = None,
) -> None:
    """Score a stored run again from the config in its manifest, into a new run directory
    (run options given here change it, e.g. --device cuda); the same as
    `evalkit score --config RUN_DIR/manifest.json`."""
    try:
        settings = run.config(None, run_dir)
    except EvalkitError as exc:
        fail(str(exc))
    _score(settings, out, cache_dir, no_cache, progress, log, log_dir)


def _score(
    settings: RunConfig,
    out: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    progress: bool,
    log: str | None,
    log_dir: Path | None,
) -> None:
    """Run the pipeline on `settings`, print the scores, log them if asked."""
    from evalkit.pipeline.plan import Output
    from evalkit.pipeline.run import run as run_pipeline

    try:
        if log is not None:
            from evalkit.trackers import check_tracker

            check_tracker(log)
        run = run_pipeline(settings, Output(out, cache_dir, not no_cache, progress))
    except EvalkitError as exc:
        fail(str(exc))
    from evalkit.report.console import print_routing_only, print_run_facts, print_scores
    from evalkit.report.longctx import print_niah

    if run.manifest.routing_only:  # no scores: say what was routed and written instead
        print_routing_only(run.manifest, run.path)
    else:
        print_scores(run.rows)
        print_niah(run.rows, run.manifest)
    print_run_facts(run.manifest)
    s = run.stats
    typer.echo(
        f"{s.unique} unique requests: {s.reused} reused from cache, {s.computed} computed"
        + (f", {s.truncated} truncated (left)" if s.truncated else "")
    )
    typer.echo(f"run written to {run.path}")
    if log is not None:
        log_to_tracker(log, [run.path], log_dir, {})


def _score_option(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        fail(f"--score-option takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


@run_options()
def sweep(
    checkpoints: Annotated[
        list[str] | None,
        typer.Argument(help="Checkpoint directories or glob patterns (quote globs)."),
    ] = None,
    *,
    run: RunOptions,
    out: Annotated[
        Path, typer.Option(help="Folder of runs: one OUT/<checkpoint name> each.")
    ] = Path("runs/sweep"),
    cache_dir: Annotated[
        Path | None, typer.Option(help="Result cache folder (on each worker's machine).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the cache.")] = False,
    score_option: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE passed to evalkit.api.score in every job (repeatable)."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: local)."),
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option(help="CPUs of the local Ray instance (default: all).")
    ] = None,
    gpus_per_job: Annotated[
        float | None, typer.Option(help="GPUs per job (default: 1 for vllm/cuda, else 0).")
    ] = None,
    cpus_per_job: Annotated[float, typer.Option(help="CPUs per job.")] = 1.0,
    retries: Annotated[int, typer.Option(help="Retries of a failed or crashed job.")] = 2,
    runtime_env: Annotated[
        Path | None, typer.Option(help="Ray runtime_env as a YAML/JSON file (pip, env_vars...).")
    ] = None,
    watch: Annotated[
        Path | None, typer.Option(help="Poll this folder and score each new checkpoint.")
    ] = None,
    poll: Annotated[float, typer.Option(help="--watch: seconds between scans.")] = 60.0,
    settle: Annotated[
        float, typer.Option(help="--watch: seconds a checkpoint must stay unchanged.")
    ] = 10.0,
    max_checkpoints: Annotated[
        int | None, typer.Option(help="--watch: stop after this many checkpoints.")
    ] = None,
    watch_timeout: Annotated[
        float | None, typer.Option(help="--watch: stop after this many seconds.")
    ] = None,
    gate: Annotated[
        Path | None, typer.Option(help="Gate each checkpoint against the previous (policy YAML).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the sweep's outcome as JSON.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
    log: Annotated[
        str | None,
        typer.Option(help="Log every run to an experiment tracker: wandb or tensorboard."),
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="Tracker folder (default: OUT/<tracker>-logs).")
    ] = None,
) -> None:
    """Score many checkpoints on Ray (resumable). Exit 0 all complete, 1 a job or gate failed.

    Every job scores its checkpoint as `evalkit score` would with the run options given here
    (--device auto: cuda when the job has GPUs, else cpu)."""
    import json

    import yaml

    from evalkit import sweep as sw

    values = run.values
    kwargs: dict[str, object] = dict(_score_option(o) for o in score_option or [])
    # The options given here pass to every job's score (the sweep sets its own four).
    own = ("suite", "tasks", "backend", "device")
    kwargs.update({k: v for k, v in run.changes().items() if k not in own})
    kwargs.update({"limit": values["limit"], "dtype": values["dtype"], "use_cache": not no_cache})
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    try:
        if log is not None:
            from evalkit.trackers import check_tracker

            check_tracker(log)
        env = None
        if runtime_env is not None:
            try:
                env = yaml.safe_load(runtime_env.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                fail(f"cannot read runtime env {runtime_env}: {type(exc).__name__}")
            if not isinstance(env, dict):
                fail(f"runtime env {runtime_env} must be a mapping")
        run.config("<each checkpoint>")  # every setting checked once, before any job starts
        backend, device = values["backend"], values["device"]
        options = sw.SweepOptions(
            suite=values["suite"],
            tasks=values["tasks"],
            backend=backend,
            device=device,
            gpus_per_job=sw.default_gpus(backend, device) if gpus_per_job is None else gpus_per_job,
            cpus_per_job=cpus_per_job,
            retries=retries,
            score_kwargs=kwargs,
        )
        common = {
            "out": out,
            "options": options,
            "address": address,
            "num_cpus": num_cpus,
            "runtime_env": env,
            "gate_policy": gate,
            "progress": progress,
        }
        if watch is not None:
            if checkpoints:
                fail("give checkpoints or --watch FOLDER, not both")
            report = sw.watch(
                watch,
                poll=poll,
                settle=settle,
                max_checkpoints=max_checkpoints,
                timeout=watch_timeout,
                **common,  # type: ignore[arg-type]
            )
        else:
            if not checkpoints:
                fail("give checkpoints (paths or globs) or --watch FOLDER")
            report = sw.sweep(checkpoints, **common)  # type: ignore[arg-type]
    except EvalkitError as exc:
        fail(str(exc))
    from rich.console import Console

    Console().print(sw.sweep_table(report))
    if json_out is not None:
        write(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
    done = [r for r in report.results if r.status != "failed"]
    if log is not None and done:
        gates = {r.job.run_dir: r.gate for r in done}
        log_to_tracker(log, [r.job.run_dir for r in done], log_dir or out / f"{log}-logs", gates)
    raise typer.Exit(report.exit_code)
