"""Slices x families heatmap of attributed effects (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from evalkit.analysis.attribute import AttributionReport


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
    cmap = matplotlib.colormaps["RdBu"].copy()
    cmap.set_bad("#d0d0d0")
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
