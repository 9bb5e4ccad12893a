"""Write a report folder: `index.html` (self-contained: plots embedded), `report.md` (plots as
relative links into `plots/`) and the PNGs themselves."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit.analysis.compare import unique_labels
from evalkit.errors import EvalkitError
from evalkit.report.blocks import Section, render_html, render_markdown
from evalkit.report.sections import SECTIONS, ReportContext, ReportOptions, SectionFn
from evalkit.store import RunData

INDEX = "index.html"
MARKDOWN = "report.md"
PLOTS = "plots"


@dataclass(frozen=True)
class ReportFiles:
    out: Path
    index: Path
    markdown: Path
    plots: tuple[Path, ...]
    sections: tuple[Section, ...]


def write_report(
    runs: Sequence[RunData],
    out: Path,
    *,
    labels: Sequence[str] | None = None,
    options: ReportOptions | None = None,
    sections: Sequence[SectionFn] = SECTIONS,
    title: str | None = None,
) -> ReportFiles:
    if not runs:
        raise EvalkitError("report needs at least one run")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EvalkitError(f"report output is not a folder: {out}")
    plots = out / PLOTS
    # A report folder is regenerated whole: stale plots from an earlier report must not linger.
    shutil.rmtree(plots, ignore_errors=True)
    try:
        plots.mkdir(parents=True)
    except OSError as exc:
        raise EvalkitError(f"cannot write the report in {out}: {exc.strerror or exc}") from None
    names = tuple(unique_labels(runs, labels))
    ctx = ReportContext(tuple(runs), names, plots, options or ReportOptions())
    built = tuple(fn(ctx) for fn in sections)
    title = title or "evalkit report: " + ", ".join(names)
    index = out / INDEX
    md = out / MARKDOWN
    index.write_text(render_html(title, built), encoding="utf-8")
    md.write_text(render_markdown(title, built, out), encoding="utf-8")
    figures = tuple(f.path for s in built for f in s.figures)
    return ReportFiles(out=out, index=index, markdown=md, plots=figures, sections=built)
