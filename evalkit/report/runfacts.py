"""Run facts for the report's "Run" section, read from the manifests (never from scores): the
tasks a run skipped on its checkpoint with why (`skipped_tasks`), the items a task left out
(task notes `skipped_items`) and a vocabulary padded beyond the tokenizer (`vocabulary`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.report.blocks import Table, Text


def run_fact_blocks(
    manifests: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> list[Table | Text]:
    skipped: list[tuple[str, ...]] = []
    left_out: list[tuple[str, ...]] = []
    vocab: list[str] = []
    for m, label in zip(manifests, labels, strict=True):
        for s in m.get("skipped_tasks") or []:
            skipped.append((f"`{label}`", str(s["task"]), str(s["family"]), str(s["reason"])))
        for t in m.get("tasks") or []:
            for bucket, count in ((t.get("notes") or {}).get("skipped_items") or {}).items():
                left_out.append((f"`{label}`", str(t["name"]), str(bucket), str(count)))
        v = m.get("vocabulary") or {}
        if v.get("padded_rows"):
            vocab.append(
                f"`{label}`: the embedding has {v['embedding_rows']} rows and the tokenizer "
                f"{v['tokenizer_tokens']} tokens; the {v['padded_rows']} extra rows share the "
                "softmax (scored as lm-eval does)."
            )
    blocks: list[Table | Text] = []
    if skipped:
        blocks.append(
            Table(
                ("run", "skipped task", "family", "why"),
                tuple(skipped),
                "Tasks that could not run on this checkpoint; they have no scores.",
            )
        )
    if left_out:
        blocks.append(
            Table(
                ("run", "task", "items left out at", "count"),
                tuple(left_out),
                "Items that did not fit the window (or the task's prompt cap) and were not run.",
            )
        )
    blocks.extend(Text(line) for line in vocab)
    return blocks
