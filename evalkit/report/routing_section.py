"""The report's MoE routing section: per layer, an expert x family and an expert x slice
heatmap of token shares, and the specialisation (mutual information) table, from the focus
run's `routing.parquet` (`evalkit.analysis.routing`). Grayscale-safe: viridis is monotonic in
lightness and every cell carries its number."""

from __future__ import annotations

from typing import Any

from evalkit.analysis.routing import ROUTING
from evalkit.report.blocks import Figure, Section, Table, Text, absent
from evalkit.report.plots import heatmap
from evalkit.store import RunData

TITLE = "MoE routing"
# Heatmaps for at most this many layers (the table lists every layer).
MAX_LAYERS = 12


def _read(run: RunData) -> Any:
    import pandas as pd

    return pd.read_parquet(run.path / ROUTING)


def _grid(frame: Any, scope: str, grouping: str, layer: int) -> tuple[list[str], list[int], Any]:
    rows = frame[
        (frame.scope == scope)
        & (frame.grouping == grouping)
        & (frame.layer == layer)
        & (frame.stat == "share")
    ]
    table = rows.pivot_table(index="group", columns="expert", values="value", aggfunc="first")
    return [str(g) for g in table.index], [int(e) for e in table.columns], table.to_numpy()


def routing_section(ctx: Any) -> Section:
    """`ctx`: the report's `ReportContext` (its focus run is shown)."""
    run: RunData = ctx.focus
    info = run.manifest.routing
    if info is None:
        return absent("routing", TITLE, "Not an MoE run (no router decisions were recorded).")
    if not info.collected or not (run.path / ROUTING).is_file():
        return absent("routing", TITLE, f"Routing: {info.status or 'absent'}.")
    frame = _read(run)
    layers = sorted({int(x) for x in frame.layer})
    blocks: list[Text | Table | Figure] = [
        Text(
            f"`{ctx.focus_label}`: {info.experts} experts, top-{info.top_k}, "
            f"{len(layers)} MoE layers; counted: {info.counted}. Share = fraction of a "
            "group's routed choices that go to the expert (each row sums to 1)."
        )
    ]
    for scope, grouping, what in (("items", "family", "task family"), ("slices", "slice", "slice")):
        for layer in layers[:MAX_LAYERS]:
            groups, experts, matrix = _grid(frame, scope, grouping, layer)
            if not groups:
                continue
            name = f"routing-{grouping}-layer{layer}"
            path = heatmap(
                ctx.plot(name),
                title=f"Layer {layer}: expert share by {what}",
                matrix=matrix.tolist(),
                row_labels=groups,
                col_labels=[str(e) for e in experts],
                xlabel="expert",
                ylabel=what,
                value_label="share of routed choices",
                vmin=0.0,
                vmax=max(0.05, float(matrix.max())),
            )
            blocks.append(Figure(path, f"Heatmap of expert shares by {what}, layer {layer}", what))
    mi = frame[(frame.stat == "mi_bits") & frame.grouping.isin(["family", "slice"])]
    mi = mi.sort_values(["scope", "grouping", "layer"])
    if len(mi):
        rows = tuple(
            (
                str(r.grouping),
                str(int(r.layer)),
                f"{r.value:.4f}",
                f"[{r.ci_low:.4f}, {r.ci_high:.4f}]",
                f"{r.null:.4f}",
                f"{r.p_value:.3f}",
                str(int(r.n_items)),
            )
            for r in mi.itertuples()
        )
        head = ("grouping", "layer", "MI (bits)", "95% CI", "null", "p", "items")
        blocks.append(
            Table(
                head,
                rows,
                "Specialisation: mutual information between the group and the chosen expert; "
                "null = mean under shuffled group labels. A CI covering the null: no evidence "
                "of specialisation.",
            )
        )
    load = frame[(frame.grouping == "all") & (frame.stat.isin(["entropy_bits", "load_cv"]))]
    if len(load):
        wide = load.pivot_table(index="layer", columns="stat", values="value", aggfunc="first")
        load_rows = tuple(
            (str(int(layer)), f"{r['entropy_bits']:.3f}", f"{r['load_cv']:.3f}")
            for layer, r in wide.iterrows()
        )
        blocks.append(
            Table(
                ("layer", "routing entropy (bits)", "load CV"),
                load_rows,
                "All scored tokens: entropy of the expert shares (log2 of the expert count when "
                "even) and coefficient of variation of expert loads (0 when even).",
            )
        )
    return Section("routing", TITLE, tuple(blocks))
