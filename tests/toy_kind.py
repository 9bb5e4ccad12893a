"""A toy task kind, added exactly as docs/tasks.md ("Adding a task kind") says: this one module
and one table entry (here passed as `evalkit.score(..., task_kinds=[EchoKind()])`).

`kind: echo` asks, for each word of its YAML list, whether the model continues "w w w" with
" w" greedily: a copying probe in twenty lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.requests import Loglikelihood, LoglikelihoodResult, Response
from evalkit.tasks.base import (
    Item,
    ItemResult,
    MetricSpec,
    Task,
    TaskDefaults,
    TokenizerInfo,
    items_hash,
    text_hash,
)
from evalkit.tasks.specs import FromSpec, load_header, spec_error


@dataclass(frozen=True)
class EchoSpec:
    name: str
    family: str
    version: str
    words: tuple[str, ...]
    source_file: Path
    description: str = ""

    @property
    def kind(self) -> str:
        return "echo"


class EchoTask(FromSpec, TaskDefaults):  # FromSpec: name, family and version are the spec's
    source = "native"
    metrics = (MetricSpec("copied"), MetricSpec("logprob"))
    spec: EchoSpec

    def __init__(self, spec: EchoSpec) -> None:
        self.spec = spec

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        words = self.spec.words[:limit]
        return [
            Item(i, f"{w} {w} {w}", (Loglikelihood(f"{w} {w} {w}", f" {w}"),), w)
            for i, w in enumerate(words)
        ]

    def content_hash(self, items: Sequence[Item]) -> str:
        return items_hash(items)

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        out = []
        for it, (r,) in zip(items, responses, strict=True):
            assert isinstance(r, LoglikelihoodResult)
            out.append(
                ItemResult(
                    it.doc_id,
                    text_hash(it.prompt),
                    (r.logprob,),
                    None,
                    it.target,
                    {"copied": float(r.is_greedy), "logprob": r.logprob},
                )
            )
        return out


class EchoKind:
    name = "echo"

    def load(self, path: Path, raw: Mapping[str, Any]) -> EchoSpec:
        # name, family, version, description: checked and read as for every kind
        head = load_header(path, raw, kind="echo", required=("words",), allowed=("words",))
        words = raw["words"]
        if not isinstance(words, list) or not words:
            raise spec_error(path, "kind echo needs a list 'words'")
        return EchoSpec(
            head.name, head.family, head.version, tuple(str(w) for w in words), path,
            head.description,
        )  # fmt: skip

    def build(self, spec: EchoSpec) -> Task:
        return EchoTask(spec)
