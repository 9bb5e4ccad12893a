"""The `evalkit` command: a thin typer layer over the Python API.

Heavy libraries (torch, transformers, pandas, lm-eval) are imported inside commands so that
`evalkit --help` answers at once. User errors print one line and exit with code 2.

The commands live by kind in `scoring` (score, rerun, sweep), `decisions` (compare, gate,
attribute, contamination) and `browse` (runs, tasks, report, query, export, version); this
module assembles them into one app, in the order `--help` lists them.
"""

from __future__ import annotations

import sys

import typer

from evalkit.cli import browse, decisions, scoring
from evalkit.errors import EvalkitError

app = typer.Typer(
    name="evalkit",
    help="Evaluate base language-model checkpoints: fast, with confidence intervals, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command, name in (
    (scoring.score, None),
    (scoring.rerun, None),
    (browse.runs, None),
    (browse.list_tasks, "tasks"),
    (browse.version, None),
    (decisions.compare, None),
    (decisions.gate, None),
    (browse.report, None),
    (scoring.sweep, None),
    (browse.query, None),
    (decisions.attribute, None),
    (decisions.contamination, None),
    (browse.export_run, "export"),
):
    app.command(name)(command)


def main() -> None:
    try:
        app()
    except EvalkitError as exc:  # pragma: no cover - commands catch their own
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
