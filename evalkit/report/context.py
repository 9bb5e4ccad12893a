"""What every report section is given (`ReportContext`), and the one rule for which run a
single-run section shows (`SingleRun`).

A report is given several runs; trajectories and deltas use them all, and a single-run section
(tasks, long context, in-context learning, languages, code, routing) shows one. Which one is
the section's to declare, not each section's special case: it says which runs it can show (a
predicate on a run, reading its typed rows), and it shows the last run given that qualifies
(the focus run, the last one, when that qualifies or none does). When the run shown is not the
focus run, the section names it. So a report of tiny-base, a retrieval control and a label
control shows the needle heatmap of the retrieval control and the label curves of the last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from evalkit.report.blocks import Section, Text
from evalkit.store import RunData


@dataclass(frozen=True)
class ReportOptions:
    resamples: int = 2000  # bootstrap resamples of the compare deltas
    seed: int = 0
    level: float = 0.95


@dataclass(frozen=True)
class ReportContext:
    runs: tuple[RunData, ...]
    labels: tuple[str, ...]
    plots: Path  # folder the PNGs go to
    options: ReportOptions
    shown: int = -1  # index of the run a single-run section shows (`SingleRun` sets it)

    @property
    def focus(self) -> RunData:
        """The run that single-run sections show: the last one given, unless a `SingleRun`
        section picked an earlier one that has its results."""
        return self.runs[self.shown]

    @property
    def focus_label(self) -> str:
        return self.labels[self.shown]

    @property
    def focus_is_last(self) -> bool:
        return self.shown in (-1, len(self.runs) - 1)

    def showing(self, index: int) -> ReportContext:
        return replace(self, shown=index)

    def plot(self, name: str) -> Path:
        return self.plots / f"{name}.png"


SectionFn = Callable[[ReportContext], Section]
RunFilter = Callable[[RunData], bool]


@dataclass(frozen=True)
class SingleRun:
    """A section that shows one run: the last run given that `shows` accepts (else the last
    run, whose absence note the section gives). `what` names the results `shows` looks for, in
    the note that names a run other than the last: "Run `x` (the last run given with ...)"."""

    build: SectionFn
    shows: RunFilter
    what: str

    def pick(self, ctx: ReportContext) -> int:
        """The index of the run this section shows."""
        last = len(ctx.runs) - 1
        return next((i for i in range(last, -1, -1) if self.shows(ctx.runs[i])), last)

    def __call__(self, ctx: ReportContext) -> Section:
        index = self.pick(ctx)
        section = self.build(ctx.showing(index))
        if index == len(ctx.runs) - 1 or section.note is not None:
            return section
        named = Text(f"Run `{ctx.labels[index]}` (the last run given with {self.what}).")
        return replace(section, blocks=(named, *section.blocks))
