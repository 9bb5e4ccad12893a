"""The needle-in-a-haystack grid (depth x length recall) and effective context length, from a
run's scores and manifest (see evalkit.tasks.probes.niah for the rows it reads)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from evalkit.schema import Manifest, ScoreRow, as_manifest


def niah_grids(scores: Sequence[ScoreRow]) -> dict[str, dict[str, Any]]:
    """Per needle task: {'cells': {(length, depth): recall}, 'lengths': {length: recall},
    'effective': (threshold, tokens) or None}, from the rows' metric and bucket fields."""
    out: dict[str, dict[str, Any]] = {}
    for s in scores:
        if s.level != "task":
            continue
        b = s.bucket_map
        keys = set(b)
        cell = s.metric == "recall" and keys == {"length", "depth"}
        length = s.metric == "recall" and keys == {"length"}
        eff = s.metric == "effective_length" and keys == {"threshold"}
        if not (cell or length or eff):
            continue
        g = out.setdefault(s.task, {"cells": {}, "lengths": {}, "effective": None})
        if cell:
            g["cells"][(int(b["length"]), int(b["depth"]))] = s.value
        elif length:
            g["lengths"][int(b["length"])] = (s.value, s.ci_low, s.ci_high)
        else:
            g["effective"] = (float(b["threshold"]), int(s.value))
    return {t: g for t, g in out.items() if g["cells"]}


def print_niah(
    scores: Sequence[ScoreRow],
    manifest: Manifest | Mapping[str, Any],
    console: Console | None = None,
) -> None:
    """One table per needle task: recall by depth (rows) and length (columns), recall per
    length with its 95% CI, the effective context length with its threshold, and the lengths
    skipped with why. Prints nothing for runs without needle tasks."""
    grids = niah_grids(scores)
    if not grids:
        return
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    # A needle task's own notes (niah.py's manifest_notes): haystack, lengths skipped.
    notes = {t.name: t.notes for t in as_manifest(manifest).tasks}
    for task, g in grids.items():
        lengths = sorted({n for n, _ in g["cells"]})
        depths = sorted({d for _, d in g["cells"]})
        note = notes.get(task, {})
        table = Table(title=f"{task}: recall", caption="rows: needle depth %, columns: length")
        table.add_column("depth %", justify="right")
        for n in lengths:
            table.add_column(str(n), justify="right")
        for d in depths:
            table.add_row(str(d), *(f"{g['cells'].get((n, d), float('nan')):.2f}" for n in lengths))
        table.add_row(
            "all (95% CI)",
            *(
                f"{g['lengths'][n][0]:.2f} [{g['lengths'][n][1]:.2f}, {g['lengths'][n][2]:.2f}]"
                if n in g["lengths"]
                else "-"
                for n in lengths
            ),
        )
        console.print(table)
        if g["effective"] is not None:
            thr, tokens = g["effective"]
            window = note.get("model_window")
            console.print(
                f"  effective context length (recall >= {thr:g} at it and every shorter "
                f"length): {tokens} tokens"
                + (f" of the model's {window}" if window else "")
                + f"; haystack {note.get('haystack', '?')}"
            )
        by_reason: dict[str, list[str]] = {}
        for n, why in (note.get("skipped_lengths") or {}).items():
            by_reason.setdefault(why, []).append(str(n))
        for why, ns in by_reason.items():
            console.print(f"  skipped length{'s' if len(ns) > 1 else ''} {', '.join(ns)}: {why}")
