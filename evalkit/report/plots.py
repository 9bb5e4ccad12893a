"""matplotlib figures for reports, each written to one PNG.

Every series differs by marker, line style or hatch as well as by color, so the figures read in
grayscale and for color-blind readers; every figure has a title, labeled axes and a legend where
there is more than one series. The Agg backend is forced: reports are made on headless machines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

# Okabe-Ito: distinct for color-blind readers; markers/hatches/dashes carry the same distinction.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
DPI = 110


@dataclass(frozen=True)
class Series:
    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    low: tuple[float, ...] | None = None  # CI, same length as y
    high: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Bars:
    label: str
    values: tuple[float, ...]  # one per category
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class ForestRow:
    label: str
    delta: float
    low: float
    high: float
    significant: bool


def style(i: int) -> dict[str, Any]:
    return {
        "color": COLORS[i % len(COLORS)],
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
    }


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def _err(values: Sequence[float], low: Sequence[float], high: Sequence[float]) -> Any:
    v, lo, hi = (np.asarray(a, dtype=float) for a in (values, low, high))
    # A CI that does not contain the point (never, but NaN-safe) must not give negative bars.
    return np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])


def bar_chart(
    path: Path,
    *,
    title: str,
    categories: Sequence[str],
    bars: Sequence[Bars],
    value_label: str,
    category_label: str,
    ref: float | None = None,
    ref_label: str = "",
) -> Path:
    """Horizontal grouped bars (one group per category, one bar per series) with CI whiskers."""
    n, k = len(categories), max(1, len(bars))
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(8, max(2.2, 0.28 * n * k + 1.4)))
    base = np.arange(n)
    for i, b in enumerate(bars):
        pos = base - 0.4 + height * (i + 0.5)
        ax.barh(
            pos,
            b.values,
            height=height * 0.92,
            color=COLORS[i % len(COLORS)],
            alpha=0.85,
            hatch=HATCHES[i % len(HATCHES)],
            edgecolor="black",
            linewidth=0.6,
            label=b.label,
            xerr=_err(b.values, b.low, b.high),
            error_kw={"ecolor": "black", "capsize": 3, "elinewidth": 1},
        )
    if ref is not None:
        ax.axvline(ref, color="black", linestyle=":", linewidth=1, label=ref_label or None)
    ax.set_yticks(base, list(categories))
    ax.invert_yaxis()
    ax.set_xlabel(value_label)
    ax.set_ylabel(category_label)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if len(bars) > 1 or ref_label:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


def line_chart(
    path: Path,
    *,
    title: str,
    series: Sequence[Series],
    xlabel: str,
    ylabel: str,
    xlog: bool = False,
    faint: Sequence[Series] = (),
    hlines: Sequence[tuple[float, str]] = (),
    xticks: Sequence[float] | None = None,
    xticklabels: Sequence[str] | None = None,
) -> Path:
    """Lines with markers and a hatched CI band per series; `faint` lines (e.g. one per seed)
    are drawn thin and gray underneath; `hlines` are labeled reference levels."""
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for j, f in enumerate(faint):
        ax.plot(
            f.x,
            f.y,
            color="0.55",
            linewidth=0.8,
            marker=".",
            linestyle=":",
            label=f.label if j == 0 or f.label != faint[0].label else None,
        )
    for i, s in enumerate(series):
        st = style(i)
        ax.plot(s.x, s.y, label=s.label, linewidth=1.8, markersize=6, **st)
        if s.low is not None and s.high is not None:
            ax.fill_between(
                s.x,
                s.low,
                s.high,
                color=st["color"],
                alpha=0.15,
                hatch=HATCHES[(i + 1) % len(HATCHES)],
                edgecolor=st["color"],
                linewidth=0,
                label=f"{s.label}: 95% CI",
            )
    for j, (y, label) in enumerate(hlines):
        ax.axhline(y, color="black", linewidth=1, linestyle=LINESTYLES[(j + 1) % 4], label=label)
    if xlog:
        ax.set_xscale("symlog", linthresh=1)
    if xticks is not None:
        ax.set_xticks(list(xticks), list(xticklabels) if xticklabels is not None else None)
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # Below the axes: a legend inside would hide the CI bands it explains.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    return _save(fig, path)


def heatmap(
    path: Path,
    *,
    title: str,
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    xlabel: str,
    ylabel: str,
    value_label: str,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Path:
    """Cells annotated with their values: the numbers, not the color, carry the result (and
    viridis stays monotonic in lightness when printed in gray)."""
    data = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(col_labels) + 3, 0.55 * len(row_labels) + 2))
    im = ax.imshow(data, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(col_labels)), list(col_labels))
    ax.set_yticks(range(len(row_labels)), list(row_labels))
    for (r, c), v in np.ndenumerate(data):
        if math.isfinite(v):
            shade = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.0
            ax.text(
                c,
                r,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if shade > 0.6 else "white",
            )
    fig.colorbar(im, ax=ax, label=value_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def forest(path: Path, *, title: str, rows: Sequence[ForestRow], xlabel: str) -> Path:
    """Deltas with CIs, one row each; significant rows are filled squares, others open circles."""
    fig, ax = plt.subplots(figsize=(8, max(2.2, 0.32 * len(rows) + 1.3)))
    ys = np.arange(len(rows))
    for kind, marker, fill in (
        (True, "s", "black"),
        (False, "o", "white"),
    ):
        idx = [i for i, r in enumerate(rows) if r.significant is kind]
        if not idx:
            continue
        ax.errorbar(
            [rows[i].delta for i in idx],
            [ys[i] for i in idx],
            xerr=_err(
                [rows[i].delta for i in idx],
                [rows[i].low for i in idx],
                [rows[i].high for i in idx],
            ),
            fmt=marker,
            color="black",
            markerfacecolor=fill,
            capsize=3,
            label="significant after correction" if kind else "not significant",
        )
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(ys, [r.label for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("task / family (metric)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
