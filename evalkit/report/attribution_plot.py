"""Slices x families heatmap of attributed effects (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evalkit.analysis.attribute import AttributionReport
from evalkit.report.blocks import Figure, Section, Table, Text
from evalkit.store import RunData


def attribution_heatmap(report: AttributionReport, out: Path) -> Path:
    """Write a PNG: one cell per (slice, family), coloured by the effect per doubling of the
    slice's share; "*" marks an interval excluding zero, "n.i." a slice the design cannot
    identify (grey, no number)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    slices, families = list(report.slices), list(report.families)
    values = np.full((len(slices), len(families)), np.nan)
    labels = [["" for _ in families] for _ in slices]
    for e in report.effects:
        i, j = slices.index(e.slice), families.index(e.family)
        if e.effect is None:
            labels[i][j] = "n.i."
            continue
        values[i, j] = e.effect
        labels[i][j] = f"{e.effect:+.3f}" + ("*" if e.significant else "")
    finite = values[np.isfinite(values)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(2.6 + 1.3 * len(families), 1.4 + 0.5 * len(slices)), dpi=120)
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#d0d0d0")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(families)), families, rotation=30, ha="right")
    ax.set_yticks(range(len(slices)), slices)
    for i in range(len(slices)):
        for j in range(len(families)):
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="effect per doubling")
    ax.set_title("Slice effects\n* interval excludes 0, n.i. not identifiable", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def attribution_section(runs: Sequence[RunData], labels: Sequence[str], plots: Path) -> Section:
    """The report's attribution section: the slices x families heatmap and a table of effects
    for a mix sweep (enough runs), the paired deltas beside slice-token differences otherwise."""
    from evalkit.analysis.attribute import attribute_runs
    from evalkit.errors import EvalkitError

    title = "Attribution to training-data slices"
    try:
        report = attribute_runs(runs, labels=labels)
    except EvalkitError as exc:
        return Section("attribution", title, note=f"Attribution is not possible here: {exc}")
    blocks: list[Text | Table | Figure] = [Text(w) for w in report.warnings]
    if report.effects:
        path = attribution_heatmap(report, plots / "attribution.png")
        blocks.append(
            Figure(
                path,
                "Heatmap of each slice's effect on each family",
                "Score change per doubling of a slice's share (log-ratio regression with ridge; "
                "95% bootstrap over runs and items). * the interval excludes 0; n.i. the design "
                "cannot identify the slice.",
            )
        )
        rows = tuple(
            (
                e.family,
                e.slice,
                "n.i." if e.effect is None else f"{e.effect:+.3f}",
                "" if e.ci_low is None else f"[{e.ci_low:+.3f}, {e.ci_high:+.3f}]",
                "yes" if e.significant else ("—" if e.effect is None else "no"),
                e.reason or "",
            )
            for e in report.effects
        )
        head = ("family", "slice", "effect / doubling", "95% CI", "significant", "why not")
        blocks.append(Table(head, rows))
    for pair in report.pairs:
        pair_rows = tuple(
            (s.slice, f"{s.tokens_a:,}", f"{s.tokens_b:,}", f"{s.tokens_b - s.tokens_a:+,}")
            for s in pair.slices
        )
        pair_head = ("slice", f"tokens {pair.a}", f"tokens {pair.b}", "difference")
        blocks.append(Table(pair_head, pair_rows, f"Slice tokens, `{pair.a}` → `{pair.b}`"))
    return Section("attribution", title, tuple(blocks))
