"""The `evalkit` command: a thin typer layer over the Python API.

Heavy libraries (torch, transformers, pandas, lm-eval) are imported inside commands so that
`evalkit --help` answers at once. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from evalkit.errors import EvalkitError

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


@app.command()
def score(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint directory (Hugging Face layout).")],
    suite: Annotated[
        str | None, typer.Option(help="Suite name (tasks/suites/NAME.yaml) or path.")
    ] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names.")] = None,
    tasks_dir: Annotated[
        Path | None, typer.Option(help="Extra folder of task YAML (native or lm-eval).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Score only the first N items per task.")
    ] = None,
    backend: Annotated[str, typer.Option(help="hf, vllm, or auto.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16, or auto.")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Run directory to write (must not exist).")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Result cache folder.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the cache.")
    ] = False,
    truncation: Annotated[
        str,
        typer.Option(
            help="Over-long inputs: 'error' (default) or 'left' (drop oldest tokens, counted)."
        ),
    ] = "error",
    provenance: Annotated[
        Path | None, typer.Option(help="provenance.yaml (default: the checkpoint's own).")
    ] = None,
    token_budget: Annotated[
        int | None, typer.Option(help="Padded tokens per scoring batch (default: from the device).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    chat_template: Annotated[
        bool,
        typer.Option(
            "--chat-template",
            help="Format prompts with the checkpoint tokenizer's chat template (few-shot as turns).",
        ),
    ] = False,
    vllm_option: Annotated[
        list[str] | None,
        typer.Option(
            help="vLLM engine setting KEY=VALUE, repeatable (tensor_parallel_size, "
            "data_parallel_size, gpu_memory_utilization, max_model_len, max_num_batched_tokens...)."
        ),
    ] = None,
) -> None:
    """Score CHECKPOINT on a suite or tasks; write a run directory and print scores with 95% CIs."""
    from evalkit.api import score as run_score

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        run = run_score(
            checkpoint,
            suite=suite,
            tasks=task_list,
            tasks_dir=tasks_dir,
            limit=limit,
            backend=backend,
            device=device,
            dtype=dtype,
            out=out,
            cache_dir=cache_dir,
            use_cache=not no_cache,
            truncation=truncation,  # type: ignore[arg-type]
            provenance=provenance,
            token_budget=token_budget,
            progress=progress,
            chat_template=chat_template,
            vllm_options=tuple(vllm_option or ()),
        )
    except EvalkitError as exc:
        _fail(str(exc))
    from evalkit.report.console import print_scores

    print_scores(run.scores)
    s = run.stats
    typer.echo(
        f"{s.unique} unique requests: {s.reused} reused from cache, {s.computed} computed"
        + (f", {s.truncated} truncated (left)" if s.truncated else "")
    )
    typer.echo(f"run written to {run.path}")


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
) -> None:
    """List the complete runs under FOLDER."""
    from evalkit.report.console import print_runs
    from evalkit.store import list_runs, read_manifest

    try:
        paths = list_runs(folder)
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
def compare(
    targets: Annotated[
        list[Path],
        typer.Argument(help="Run directories or checkpoints (scored first); the first is A."),
    ],
    suite: Annotated[
        str | None, typer.Option(help="Suite to score checkpoints on (runs need none).")
    ] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks to score.")] = None,
    tasks_dir: Annotated[Path | None, typer.Option(help="Extra folder of task YAML.")] = None,
    limit: Annotated[int | None, typer.Option(help="Score only N items per task.")] = None,
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
    backend: Annotated[str, typer.Option(help="hf, vllm, or auto.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, or auto.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16, or auto.")] = "auto",
    cache_dir: Annotated[Path | None, typer.Option(help="Result cache folder.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the cache.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Paired comparison: per task and family A, B, delta, CI, p (corrected) and MDE."""
    import json

    from evalkit.api import compare as run_compare

    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        report = run_compare(
            *targets,
            suite=suite,
            tasks=task_list,
            tasks_dir=tasks_dir,
            limit=limit,
            chat=chat,
            out_dir=out_dir,
            backend=backend,
            device=device,
            dtype=dtype,
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


def main() -> None:
    try:
        app()
    except EvalkitError as exc:  # pragma: no cover - commands catch their own
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
