"""The decision commands: `compare`, `gate`, `attribute`, `contamination`. They read
stored runs (compare scores a checkpoint among its targets first, through the pipeline;
attribute --slice-fit loads each run's checkpoint again)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evalkit.cli.common import CacheDirOption, NoCacheOption, ProgressOption, fail, write
from evalkit.cli_options import RunOptions, run_options
from evalkit.errors import EvalkitError


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
        fail(str(exc))
    from evalkit.report.markdown import compare_markdown
    from evalkit.report.tables import print_compare

    print_compare(report)
    if markdown is not None:
        write(markdown, compare_markdown(report))
    if json_out is not None:
        write(json_out, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")


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
        fail(str(exc))
    from evalkit.report.markdown import gate_junit, gate_markdown
    from evalkit.report.tables import print_gate

    print_gate(verdict)
    if junit is not None:
        write(junit, gate_junit(verdict))
    if summary is not None:
        write(summary, gate_markdown(verdict))
    if json_out is not None:
        write(json_out, json.dumps(verdict.to_dict(), indent=2, allow_nan=False) + "\n")
    raise typer.Exit(verdict.exit_code)


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
        fail(str(exc))
    print_attribution(report)
    if json_out is not None:
        write(json_out, json.dumps(report.to_dict(), indent=2))
        typer.echo(f"report written to {json_out}")
    if plot is not None:
        if not report.effects:
            fail("no sweep effects to plot (too few runs for a mix sweep)")
        from evalkit.report.attribution_plot import attribution_heatmap

        attribution_heatmap(report, plot)
        typer.echo(f"heatmap written to {plot}")


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
        fail(str(exc))
    print_contamination(report)
    if json_out is not None:
        write(json_out, json.dumps(report.to_dict(), indent=2))
        typer.echo(f"report written to {json_out}")
