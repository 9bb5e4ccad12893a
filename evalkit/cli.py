"""The `evalkit` command: a thin typer layer over the Python API.

Heavy libraries (torch, transformers, pandas, lm-eval) are imported inside commands so that
`evalkit --help` answers at once. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from evalkit.cli_options import RunOptions, run_options
from evalkit.errors import EvalkitError
from evalkit.pipeline.config import RunConfig

app = typer.Typer(
    name="evalkit",
    help="Evaluate base language-model checkpoints: fast, with confidence intervals, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


_CONFIG_HELP = (
    "Run config: a YAML file of settings (RunConfig's fields), or a run's manifest.json (or its "
    "directory) to score it again; run options given here change it."
)
OutOption = Annotated[Path | None, typer.Option(help="Run directory to write (must not exist).")]
CacheDirOption = Annotated[Path | None, typer.Option(help="Result cache folder.")]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write the cache.")
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
LogOption = Annotated[
    str | None, typer.Option(help="Log scores to an experiment tracker: wandb or tensorboard.")
]
LogDirOption = Annotated[
    Path | None, typer.Option(help="Tracker folder (default: beside the run).")
]


@app.command()
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
        _fail(str(exc))
    _score(settings, out, cache_dir, no_cache, progress, log, log_dir)


@app.command()
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
        _fail(str(exc))
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
        _fail(str(exc))
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
        _log_to_tracker(log, [run.path], log_dir, {})


def _log_to_tracker(
    kind: str, runs: list[Path], log_dir: Path | None, gates: dict[Path, str | None]
) -> None:
    """Write the runs' HTML report and log them (scores, CIs, gate, report) to the tracker."""
    from evalkit.api import make_report
    from evalkit.trackers import Tracked, log_runs

    base = log_dir or runs[-1].parent / f"{kind}-logs"
    try:
        report = make_report(*runs, out=base / f"report-{runs[-1].name}").index
        tracked = [Tracked(r, gates.get(r), report if r == runs[-1] else None) for r in runs]
        where = log_runs(kind, tracked, base, name=runs[-1].name)
    except EvalkitError as exc:
        _fail(str(exc))
    typer.echo(f"logged to {kind} in {where}")


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
    slices: Annotated[
        bool, typer.Option("--slices", help="Show each run's training mix (provenance).")
    ] = False,
) -> None:
    """List the complete runs under FOLDER."""
    from evalkit.report.console import print_runs
    from evalkit.store import list_runs, read_manifest

    try:
        paths = list_runs(folder)
        if slices:
            from evalkit.report.provenance_tables import print_run_slices

            print_run_slices([(p, read_manifest(p)) for p in paths])
            return
        print_runs([(p, read_manifest(p)) for p in paths])
    except EvalkitError as exc:
        _fail(str(exc))


@app.command("tasks")
def list_tasks(
    tasks_dir: Annotated[Path | None, typer.Option(help="Extra folder of task YAML.")] = None,
) -> None:
    """List native tasks and suites."""
    from evalkit.report.console import print_tasks
    from evalkit.tasks.registry import available_suites, builtin_tasks_dir, native_specs

    try:
        dirs = [builtin_tasks_dir()] + ([tasks_dir] if tasks_dir else [])
        print_tasks(list(native_specs(dirs).values()), available_suites())
    except EvalkitError as exc:
        _fail(str(exc))


@app.command()
def version() -> None:
    """Print evalkit's version."""
    from evalkit import __version__

    typer.echo(__version__)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")


@app.command()
@run_options(exclude=("seed", "chat_template"))  # compare's --seed is its bootstrap's
def compare(
    targets: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories, or checkpoints to score first (through the pipeline, with "
            "the run options below); the first is A."
        ),
    ],
    *,
    run: RunOptions,
    chat: Annotated[
        bool | None,
        typer.Option(
            "--chat/--no-chat",
            help="Also score checkpoints through their chat template (default: if they have one).",
        ),
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Break rows down by an item tag (language, length, k...).")
    ] = None,
    cluster: Annotated[
        str | None, typer.Option(help="Resample items sharing this tag together.")
    ] = None,
    correction: Annotated[str, typer.Option(help="holm, bh, bonferroni or none.")] = "holm",
    alpha: Annotated[float, typer.Option(help="Significance level after correction.")] = 0.05,
    test: Annotated[
        str, typer.Option(help="auto (McNemar for 0/1, else bootstrap), bootstrap, permutation.")
    ] = "auto",
    metrics: Annotated[str, typer.Option(help="primary (one per task) or all.")] = "primary",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    noise: Annotated[
        list[Path] | None,
        typer.Option(help="Runs of a training run's last checkpoints (or their folder): SNR."),
    ] = None,
    noise_last: Annotated[int, typer.Option(help="Checkpoints that measure noise.")] = 5,
    min_snr: Annotated[float, typer.Option(help="Flag tasks whose SNR is below this.")] = 3.0,
    markdown: Annotated[
        Path | None, typer.Option(help="Write a markdown report (e.g. a PR comment).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="Where runs of scored checkpoints go.")
    ] = None,
    cache_dir: CacheDirOption = None,
    no_cache: NoCacheOption = False,
    progress: ProgressOption = True,
) -> None:
    """Paired comparison: per task and family A, B, delta, CI, p (corrected) and MDE.

    It reads stored runs only. A checkpoint among TARGETS needs the model: it is scored first,
    exactly as `evalkit score` would (score, then compare), and its runs go to --out-dir."""
    import json

    from evalkit.api import compare as run_compare

    settings = dict(run.values)
    scoring = {k: settings.pop(k) for k in ("suite", "tasks", "tasks_dir", "limit")}
    scoring |= {k: settings.pop(k) for k in ("backend", "device", "dtype")}
    try:
        report = run_compare(
            *targets,
            suite=scoring["suite"],
            tasks=list(scoring["tasks"]) or None,
            tasks_dir=scoring["tasks_dir"],
            limit=scoring["limit"],
            chat=chat,
            out_dir=out_dir,
            backend=scoring["backend"],
            device=scoring["device"],
            dtype=scoring["dtype"],
            cache_dir=cache_dir,
            use_cache=not no_cache,
            progress=progress,
            by=by,
            cluster=cluster,
            correction=correction,
            alpha=alpha,
            test=test,
            metrics=metrics,
            resamples=resamples,
            seed=seed,
            noise=noise or (),
            noise_last=noise_last,
            min_snr=min_snr,
            settings=settings,
        )
    except EvalkitError as exc:
        _fail(str(exc))
    from evalkit.report.markdown import compare_markdown
    from evalkit.report.tables import print_compare

    print_compare(report)
    if markdown is not None:
        _write(markdown, compare_markdown(report))
    if json_out is not None:
        _write(json_out, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")


@app.command()
def gate(
    baseline: Annotated[
        list[Path],
        typer.Option(help="Baseline run (repeat, or a folder of a training run's runs)."),
    ],
    candidate: Annotated[
        list[Path], typer.Option(help="Candidate run (repeat to average several).")
    ],
    policy: Annotated[Path, typer.Option(help="Gate policy YAML (e.g. tasks/gates/smoke.yaml).")],
    baseline_select: Annotated[
        str | None,
        typer.Option(help="latest, mean (of the last N) or best (of the last N); default: policy."),
    ] = None,
    baseline_last: Annotated[
        int | None, typer.Option(help="N for --baseline-select mean or best.")
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML for CI.")] = None,
    summary: Annotated[Path | None, typer.Option(help="Write a markdown summary.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the verdict as JSON.")
    ] = None,
) -> None:
    """Regression gate. Exit 0 pass, 1 regression, 3 inconclusive (too few items), 2 error."""
    import json

    from evalkit.api import gate as run_gate

    try:
        verdict = run_gate(
            baseline,
            candidate,
            policy,
            baseline_select=baseline_select,
            baseline_last=baseline_last,
        )
    except EvalkitError as exc:
        _fail(str(exc))
    from evalkit.report.markdown import gate_junit, gate_markdown
    from evalkit.report.tables import print_gate

    print_gate(verdict)
    if junit is not None:
        _write(junit, gate_junit(verdict))
    if summary is not None:
        _write(summary, gate_markdown(verdict))
    if json_out is not None:
        _write(json_out, json.dumps(verdict.to_dict(), indent=2, allow_nan=False) + "\n")
    raise typer.Exit(verdict.exit_code)


@app.command()
def report(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories (or folders of runs), oldest first.")
    ],
    out: Annotated[Path, typer.Option(help="Report folder (index.html, report.md, plots/).")],
    label: Annotated[
        list[str] | None, typer.Option(help="Label of each run (repeat; default: folder name).")
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the deltas.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
) -> None:
    """Write a self-contained HTML report and a markdown report with plots of RUNS."""
    from evalkit.api import make_report as run_report

    try:
        files = run_report(
            *runs, out=out, labels=label or None, resamples=resamples, seed=seed, title=title
        )
    except EvalkitError as exc:
        _fail(str(exc))
    typer.echo(f"markdown: {files.markdown}")
    typer.echo(f"plots: {len(files.plots)} in {files.out / 'plots'}")
    typer.echo(f"report written to {files.index}")


def _score_option(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        _fail(f"--score-option takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


@app.command()
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
                _fail(f"cannot read runtime env {runtime_env}: {type(exc).__name__}")
            if not isinstance(env, dict):
                _fail(f"runtime env {runtime_env} must be a mapping")
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
                _fail("give checkpoints or --watch FOLDER, not both")
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
                _fail("give checkpoints (paths or globs) or --watch FOLDER")
            report = sw.sweep(checkpoints, **common)  # type: ignore[arg-type]
    except EvalkitError as exc:
        _fail(str(exc))
    from rich.console import Console

    Console().print(sw.sweep_table(report))
    if json_out is not None:
        _write(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
    done = [r for r in report.results if r.status != "failed"]
    if log is not None and done:
        gates = {r.job.run_dir: r.gate for r in done}
        _log_to_tracker(log, [r.job.run_dir for r in done], log_dir or out / f"{log}-logs", gates)
    raise typer.Exit(report.exit_code)


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help="SQL over the views runs, scores, samples, slices, routing.")
    ] = "SELECT * FROM runs",
    runs_dir: Annotated[Path, typer.Option("--runs", help="Folder holding runs.")] = Path("runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Query every run under --runs with DuckDB SQL (see docs/sweep.md for the views)."""
    from evalkit.catalog import query as run_query

    if json_out and csv_out:
        _fail("give at most one of --json and --csv")
    try:
        result = run_query(sql, runs_dir)
    except EvalkitError as exc:
        _fail(str(exc))
    from evalkit.report.console import print_query

    print_query(result.columns, result.rows, "json" if json_out else "csv" if csv_out else "table")


@app.command()
def attribute(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, or folders of runs.")],
    metric: Annotated[
        str | None,
        typer.Option(
            help="Per-item metric (default: bpb of the gold answer, else p_correct, acc_norm, acc)."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Reference slice of the log-ratios (results do not depend on it)."),
    ] = None,
    ridge: Annotated[float, typer.Option(help="Ridge penalty per run.")] = 1e-3,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 1000,
    level: Annotated[float, typer.Option(help="Confidence level.")] = 0.95,
    min_log_sd: Annotated[
        float, typer.Option(help="Below this sd of log-share a slice is not identifiable.")
    ] = 0.05,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    slice_fit: Annotated[
        bool,
        typer.Option(
            "--slice-fit",
            help="Also measure bits per byte on each slice's sample documents (needs the "
            "model: loads each run's checkpoint again, docs/pipeline.md).",
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="Device for --slice-fit.")] = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a slices x families heatmap PNG.")
    ] = None,
) -> None:
    """Attribute the runs' scores to their training-data slices: ablation pairs for a few runs,
    a log-ratio regression with bootstrap CIs for a mix sweep. Reads stored runs only, but
    for --slice-fit."""
    import json

    from evalkit.api import attribute as run_attribute
    from evalkit.report.provenance_tables import print_attribution

    try:
        report = run_attribute(
            *runs,
            metric=metric,
            reference=reference,
            ridge=ridge,
            resamples=resamples,
            level=level,
            min_log_sd=min_log_sd,
            seed=seed,
            with_slice_fit=slice_fit,
            device=device,
        )
    except EvalkitError as exc:
        _fail(str(exc))
    print_attribution(report)
    if json_out is not None:
        _write(json_out, json.dumps(report.to_dict(), indent=2))
        typer.echo(f"report written to {json_out}")
    if plot is not None:
        if not report.effects:
            _fail("no sweep effects to plot (too few runs for a mix sweep)")
        from evalkit.report.attribution_plot import attribution_heatmap

        attribution_heatmap(report, plot)
        typer.echo(f"heatmap written to {plot}")


@app.command()
def contamination(
    target: Annotated[Path, typer.Argument(help="A run directory, or a checkpoint (flags only).")],
    suite: Annotated[str | None, typer.Option(help="Suite whose items are checked.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names.")] = None,
    tasks_dir: Annotated[Path | None, typer.Option(help="Extra folder of task YAML.")] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", help="n-gram length in words (default: per task, 8-13)."),
    ] = None,
    provenance: Annotated[
        Path | None, typer.Option(help="provenance.yaml (default: the run's or checkpoint's).")
    ] = None,
    max_documents: Annotated[
        int | None, typer.Option(help="Read at most this many documents per slice.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
) -> None:
    """Flag eval items whose n-grams occur in the training slices' sample documents, and
    compare scores on clean and dirty items per task. The tasks' items are rebuilt to read
    their text (no model); a stored run's scores are joined to them by prompt hash."""
    import json

    from evalkit.api import contamination as run_contamination
    from evalkit.report.provenance_tables import print_contamination

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        report = run_contamination(
            target,
            suite=suite,
            tasks=task_list,
            tasks_dir=tasks_dir,
            n=n,
            provenance=provenance,
            max_documents=max_documents,
        )
    except EvalkitError as exc:
        _fail(str(exc))
    print_contamination(report)
    if json_out is not None:
        _write(json_out, json.dumps(report.to_dict(), indent=2))
        typer.echo(f"report written to {json_out}")


@app.command("export")
def export_run(
    run: Annotated[Path, typer.Argument(help="Run directory to export.")],
    out: Annotated[Path, typer.Option(help="Folder to write the files under.")],
    format: Annotated[str, typer.Option("--format", help="lmeval (lm-eval 0.4's files).")] = (
        "lmeval"
    ),
) -> None:
    """Write a run as another harness's result files (lm-eval's results_*.json, samples_*.jsonl)."""
    from evalkit.export import export

    try:
        files = export(run, out, format)
    except EvalkitError as exc:
        _fail(str(exc))
    typer.echo(f"{len(files)} files written to {files[0].parent}")


def main() -> None:
    try:
        app()
    except EvalkitError as exc:  # pragma: no cover - commands catch their own
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
