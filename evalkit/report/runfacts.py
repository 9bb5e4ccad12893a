"""Run facts for the report's "Run" section, read from the manifests (never from scores): the
tasks a run skipped on its checkpoint with why (`skipped_tasks`), the items a task left out
(task notes `skipped_items`), summaries with no value on the run and why (task notes
`undefined_summaries`) and a vocabulary padded beyond the tokenizer (`vocabulary`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.report.blocks import Table, Text
from evalkit.schema import Manifest, as_manifest


@dataclass(frozen=True)
class PaddedVocab:
    embedding_rows: int
    tokenizer_tokens: int
    padded_rows: int


@dataclass(frozen=True)
class RunFacts:
    """What one manifest says beside the scores, read in one place for the report and the
    console (`evalkit.report.console.print_run_facts`)."""

    skipped: tuple[tuple[str, str, str], ...]  # (task, family, why)
    left_out: tuple[tuple[str, str, str], ...]  # (task, bucket, item count)
    undefined: tuple[tuple[str, str, str], ...]  # (task, summary metric, why it has no value)
    vocab: PaddedVocab | None  # a vocabulary padded beyond the tokenizer


def run_facts(manifest: Manifest | Mapping[str, Any]) -> RunFacts:
    """`manifest`: a run's (or a mapping of manifest.json's keys, read as one)."""
    m = as_manifest(manifest)
    skipped = tuple((s.task, s.family, s.reason) for s in m.skipped_tasks)
    # A task's notes are its own record (each task kind says what it notes).
    left_out = tuple(
        (t.name, str(bucket), str(count))
        for t in m.tasks
        for bucket, count in (t.notes.get("skipped_items") or {}).items()
    )
    undefined = tuple(
        (t.name, str(metric), str(why))
        for t in m.tasks
        for metric, why in (t.notes.get("undefined_summaries") or {}).items()
    )
    v = m.vocabulary
    vocab = None
    if v is not None and v.padded_rows:
        vocab = PaddedVocab(v.embedding_rows, v.tokenizer_tokens, v.padded_rows)
    return RunFacts(skipped, left_out, undefined, vocab)


def run_fact_blocks(
    manifests: Sequence[Manifest | Mapping[str, Any]], labels: Sequence[str]
) -> list[Table | Text]:
    skipped: list[tuple[str, ...]] = []
    left_out: list[tuple[str, ...]] = []
    undefined: list[tuple[str, ...]] = []
    vocab: list[str] = []
    for m, label in zip(manifests, labels, strict=True):
        facts = run_facts(m)
        skipped += [(f"`{label}`", *s) for s in facts.skipped]
        left_out += [(f"`{label}`", *t) for t in facts.left_out]
        undefined += [(f"`{label}`", *u) for u in facts.undefined]
        if (v := facts.vocab) is not None:
            vocab.append(
                f"`{label}`: the embedding has {v.embedding_rows} rows and the tokenizer "
                f"{v.tokenizer_tokens} tokens; the {v.padded_rows} extra rows share the "
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
    if undefined:
        blocks.append(
            Table(
                ("run", "task", "summary", "why it has no value"),
                tuple(undefined),
                "Summaries a task could not compute on this run; they have no score row.",
            )
        )
    blocks.extend(Text(line) for line in vocab)
    return blocks
