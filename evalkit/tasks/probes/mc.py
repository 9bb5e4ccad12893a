"""What the few-shot curve and the label probes share: multiple-choice documents from a
generator, a test/demonstration split, demonstrations rendered with the templates, and the
per-item multiple-choice metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import Loglikelihood, Response
from evalkit.tasks.base import Item, ItemResult, TagValue, text_hash
from evalkit.tasks.probes.common import Probe, ProbeSpec, group_mean, load_docs, mc_values


def _tag(value: Any) -> TagValue:
    return value if isinstance(value, str | int | float | bool) else str(value)


class MCProbe(Probe):
    """Shared by the few-shot curve and the label probes: docs, templates, demonstrations."""

    def __init__(self, spec: ProbeSpec) -> None:
        super().__init__(spec)
        self._docs: list[dict[str, Any]] | None = None
        self.prompt = str(self._p("prompt", ""))
        self.choices_key = str(self._p("choices", "choices"))
        self.gold_key = str(self._p("gold", "gold"))
        self.delimiter = str(self._p("target_delimiter", " "))
        self.separator = str(self._p("separator", "\n\n"))
        self.tags = tuple(str(t) for t in self._p("tags", []) or [])
        seeds = self._p("seeds", 5)
        self.seeds: tuple[int, ...] = (
            tuple(range(int(seeds))) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
        )
        self.n_test = int(self._p("n_test", 20))
        if not self.prompt or not self.seeds or self.n_test < 1:
            raise self._fail("needs a 'prompt', at least one seed and n_test >= 1")

    def docs(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = load_docs(self.name, self._p("docs", {}))
        return self._docs

    def _split(self, limit: int | None, max_k: int) -> tuple[list[int], list[int]]:
        """Test documents first, the rest a disjoint pool of demonstrations."""
        docs = self.docs()
        if len(docs) < self.n_test + max_k:
            raise EvalkitError(
                f"task {self.name}: {self.n_test} test docs and {max_k}-shot need at least "
                f"{self.n_test + max_k} docs, the generator gave {len(docs)}"
            )
        n = self.n_test if limit is None else min(limit, self.n_test)
        return list(range(n)), list(range(self.n_test, len(docs)))

    def _shot(self, j: int, label: int | None = None) -> str:
        doc = self.docs()[j]
        choices, gold = self.r.choices(doc, self.choices_key, self.gold_key, j)
        answer = choices[gold if label is None else label]
        return self.r.render("prompt", self.prompt, doc, j) + self.delimiter + answer

    def _mc_item(
        self, doc_id: int, i: int, demos: Sequence[str], tags: list[tuple[str, TagValue]]
    ) -> Item:
        doc = self.docs()[i]
        choices, gold = self.r.choices(doc, self.choices_key, self.gold_key, i)
        head = "".join(d + self.separator for d in demos)
        prompt = head + self.r.render("prompt", self.prompt, doc, i)
        requests = tuple(Loglikelihood(prompt, self.delimiter + c) for c in choices)
        doc_tags = [(t, _tag(self.r.field(doc, t, i))) for t in self.tags]
        all_tags: list[tuple[str, TagValue]] = [
            ("family", self.family),
            ("test_doc", i),
            *tags,
            *doc_tags,
        ]
        return Item(doc_id, prompt, requests, choices[gold], tuple(all_tags))

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        out = []
        for it, resps in zip(items, responses, strict=True):
            i = int(dict(it.tags)["test_doc"])
            choices, gold = self.r.choices(self.docs()[i], self.choices_key, self.gold_key, i)
            lls, values = mc_values(resps, choices, gold, self.delimiter)
            best = max(range(len(lls)), key=lls.__getitem__)
            out.append(
                ItemResult(
                    doc_id=it.doc_id,
                    prompt_hash=text_hash(it.prompt),
                    loglikelihoods=lls,
                    prediction=choices[best],
                    target=it.target,
                    metrics=values,
                    tags=dict(it.tags),
                )
            )
        return out


def by_tag(metric: str, tag: str, value: TagValue) -> Any:
    """A summary: the mean of `metric` over the items tagged `tag` = `value`."""

    def compute(results: Sequence[ItemResult]) -> float:
        return group_mean(results, metric, tag, value)

    return compute
