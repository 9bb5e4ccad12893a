"""Native tasks: a small YAML spec (native_spec.py) + a named, seeded generator or a JSONL file
of docs, built into items and scored here.

One field, one meaning. Templates are `str.format` strings over a document's fields; a missing
field is an error naming the task, the template and the document, never an empty string.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from evalkit import metrics as M
from evalkit.errors import EvalkitError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    Response,
    RollingLoglikelihood,
    RollingResult,
)
from evalkit.tasks.base import (
    Item,
    ItemResult,
    MetricSpec,
    TagValue,
    TaskDefaults,
    TokenizerInfo,
    Turns,
    items_hash,
    text_hash,
)
from evalkit.tasks.generators import get_generator
from evalkit.tasks.native_spec import TaskSpec
from evalkit.tasks.options import RunOptions, native_generation
from evalkit.tasks.specs import FromSpec
from evalkit.tasks.templates import Renderer


class NativeTask(FromSpec, TaskDefaults):
    source = "native"
    spec: TaskSpec

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._docs: list[dict[str, Any]] | None = None
        self._r = Renderer(spec.name)

    accepts_options = True

    def with_options(self, options: RunOptions) -> NativeTask:
        """This task under --num-fewshot / --gen-kwargs / --seed (`evalkit.tasks.options`)."""
        s = self.spec
        fewshot = s.fewshot
        if options.num_fewshot is not None and options.num_fewshot != fewshot.k:
            if not fewshot.overridable or s.request == "rolling":
                raise EvalkitError(
                    f"--num-fewshot: native task {s.name} fixes k={fewshot.k} in "
                    f"{s.source_file} (its fewshot section does not say overridable: true)"
                )
            fewshot = dataclasses.replace(fewshot, k=options.num_fewshot)
        if options.seed is not None and fewshot.k:
            fewshot = dataclasses.replace(fewshot, seed=options.seed)
        stop, max_tokens = s.stop, s.max_tokens
        if options.gen_kwargs and s.request == "generate":
            stop, max_tokens = native_generation(s.name, options.gen_kwargs, stop, max_tokens)
        spec = dataclasses.replace(s, fewshot=fewshot, stop=stop, max_tokens=max_tokens)
        return self if spec == s else NativeTask(spec)

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return tuple(
            MetricSpec(name=m, higher_is_better=M.CATALOG[m].higher_is_better)
            for m in self.spec.metrics
        )

    # -- documents ------------------------------------------------------------------------
    def docs(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = self._load_docs()
        return self._docs

    def _load_docs(self) -> list[dict[str, Any]]:
        d = self.spec.docs
        if d.path is not None:
            if not d.path.is_file():
                raise EvalkitError(f"task {self.name}: docs file not found: {d.path}")
            docs = []
            for lineno, line in enumerate(d.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    docs.append(json.loads(line))
                except ValueError:
                    raise EvalkitError(
                        f"task {self.name}: {d.path} line {lineno} is not valid JSON"
                    ) from None
            return docs
        assert d.generator is not None
        try:
            gen = get_generator(d.generator)
        except KeyError as exc:
            raise EvalkitError(f"task {self.name}: {exc.args[0]}") from None
        try:
            return gen(random.Random(d.seed), d.n, **d.params)
        except TypeError as exc:
            raise EvalkitError(f"task {self.name}: bad generator params: {exc}") from None

    # -- rendering ------------------------------------------------------------------------
    def _choices(self, doc: Mapping[str, Any], i: int) -> tuple[list[str], int]:
        choices = self._r.field(doc, self.spec.choices, i)
        gold = self._r.field(doc, self.spec.gold, i)
        if not isinstance(choices, list) or not choices:
            raise EvalkitError(
                f"task {self.name}: doc {i} field {self.spec.choices!r} is not a list"
            )
        if not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise EvalkitError(f"task {self.name}: doc {i} has gold index {gold!r} out of range")
        return [str(c) for c in choices], gold

    def _answer_text(self, doc: Mapping[str, Any], i: int) -> str:
        """A demonstration's answer without the target delimiter (a log-likelihood
        continuation carries its own spacing)."""
        s = self.spec
        if s.request == "multiple_choice":
            choices, gold = self._choices(doc, i)
            return choices[gold]
        if s.request == "loglikelihood":
            return self._r.render("continuation", s.continuation, doc, i)
        return self._r.render("target", s.target, doc, i)

    def _delimiter(self) -> str:
        """What separates a demonstration's prompt from its answer."""
        return "" if self.spec.request == "loglikelihood" else self.spec.target_delimiter

    def _shots(self, docs: list[dict[str, Any]], i: int) -> list[tuple[str, str]]:
        """Item i's demonstrations as (prompt, answer without delimiter)."""
        k = self.spec.fewshot.k
        if k == 0:
            return []
        if k >= len(docs):
            raise EvalkitError(f"task {self.name}: {k}-shot needs more than {len(docs)} docs")
        # Seeded per item, never including the item itself.
        rng = random.Random(f"{self.spec.fewshot.seed}:{i}")
        pool = [j for j in range(len(docs)) if j != i]
        return [
            (self._r.render("prompt", self.spec.prompt, docs[j], j), self._answer_text(docs[j], j))
            for j in rng.sample(pool, k)
        ]

    def _demonstrations(self, docs: list[dict[str, Any]], i: int) -> str:
        sep, delim = self.spec.fewshot.separator, self._delimiter()
        return "".join(q + delim + a + sep for q, a in self._shots(docs, i))

    def chat_turns(self, item: Item) -> Turns | None:
        """Each demonstration as a (question, answer) turn pair, then the item's question.
        None (one user turn) for rolling text, which has no question."""
        if self.spec.request == "rolling":
            return None
        docs = self.docs()
        i = item.doc_id
        shots = self._shots(docs, i)
        question = self._r.render("prompt", self.spec.prompt, docs[i], i)
        if self._demonstrations(docs, i) + question != item.prompt:
            # Not this task's item as built (a caller's edit): shown as one turn, recorded.
            return None
        return Turns(tuple((q, a.strip()) for q, a in shots), question)

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        docs = self.docs()
        if not docs:
            raise EvalkitError(f"task {self.name}: no documents")
        n = len(docs) if limit is None else min(limit, len(docs))
        return [self._item(docs, i) for i in range(n)]

    def _item(self, docs: list[dict[str, Any]], i: int) -> Item:
        s = self.spec
        doc = docs[i]
        tags: list[tuple[str, TagValue]] = [("family", s.family)]
        for t in s.tags:
            value = self._r.field(doc, t, i)
            tags.append((t, value if isinstance(value, str | int | float | bool) else str(value)))
        requests: tuple[Request, ...]
        if s.request == "rolling":
            text = self._r.render("text", s.text, doc, i)
            return Item(i, text, (RollingLoglikelihood(text),), text, tuple(tags))
        prompt = self._demonstrations(docs, i) + self._r.render("prompt", s.prompt, doc, i)
        if s.request == "multiple_choice":
            choices, gold = self._choices(doc, i)
            requests = tuple(Loglikelihood(prompt, s.target_delimiter + c) for c in choices)
            target = choices[gold]
        elif s.request == "loglikelihood":
            target = self._r.render("continuation", s.continuation, doc, i)
            requests = (Loglikelihood(prompt, target),)
        else:
            target = self._r.render("target", s.target, doc, i)
            requests = (Generate(prompt=prompt, stop=s.stop, max_tokens=s.max_tokens),)
        return Item(i, prompt, requests, target, tuple(tags))

    def content_hash(self, items: Sequence[Item]) -> str:
        return items_hash(items)

    # -- scoring --------------------------------------------------------------------------
    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        docs = self.docs()
        return [
            self._score_one(it, resp, docs[it.doc_id])
            for it, resp in zip(items, responses, strict=True)
        ]

    def _score_one(
        self, item: Item, resps: Sequence[Response], doc: Mapping[str, Any]
    ) -> ItemResult:
        s = self.spec
        values: dict[str, float]
        prediction: str | None = None
        lls: tuple[float, ...] = ()
        if s.request == "multiple_choice":
            choices, gold = self._choices(doc, item.doc_id)
            lls = tuple(_ll(r) for r in resps)
            values = M.multiple_choice(lls, choices, gold, s.target_delimiter)
            prediction = choices[M.argmax(lls)]
        elif s.request == "loglikelihood":
            r = resps[0]
            assert isinstance(r, LoglikelihoodResult)
            lls = (r.logprob,)
            values = {
                "acc": float(r.is_greedy),
                "bpb": M.bits_per_byte(r.logprob, item.target),
                "logprob": r.logprob,
            }
        elif s.request == "rolling":
            r = resps[0]
            assert isinstance(r, RollingResult)
            lls = (r.logprob,)
            values = {"bpb": M.bits_per_byte(r.logprob, item.target), "logprob": r.logprob}
        else:
            r = resps[0]
            assert isinstance(r, GenerateResult)
            text = r.texts[0]
            if s.extract is not None:
                prediction = M.extract_number(text, s.extract.select)
            else:
                prediction = text.strip()
            values = {"exact_match": M.exact_match(prediction, item.target)}
        return ItemResult(
            doc_id=item.doc_id,
            prompt_hash=text_hash(item.prompt),
            loglikelihoods=lls,
            prediction=prediction,
            target=item.target,
            metrics={m: values[m] for m in s.metrics},
            tags=dict(item.tags),
        )


def _ll(r: Response) -> float:
    if not isinstance(r, LoglikelihoodResult):
        raise TypeError(f"expected a loglikelihood result, got {type(r).__name__}")
    return r.logprob
