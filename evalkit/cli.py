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


def main() -> None:
    try:
        app()
    except EvalkitError as exc:  # pragma: no cover - commands catch their own
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
