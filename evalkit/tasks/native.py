"""Native tasks: a small YAML spec (+ a named, seeded generator or a JSONL file of docs).

One field, one meaning. Templates are `str.format` strings over a document's fields; a missing
field is an error naming the task, the template and the document, never an empty string.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

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
from evalkit.tasks.options import RunOptions, native_generation
from evalkit.tasks.specs import FromSpec, load_header
from evalkit.tasks.templates import Renderer

# The request shape of a `kind: native` task (YAML `request`).
RequestShape = Literal["multiple_choice", "loglikelihood", "rolling", "generate"]
REQUEST_SHAPES: tuple[str, ...] = ("multiple_choice", "loglikelihood", "rolling", "generate")

# Which metrics each request shape can compute (their direction and unit: `M.CATALOG`).
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "multiple_choice": (
        "acc",
        "acc_norm",
        "p_correct",
        "bpb",
        "prob_correct",
        "margin",
        "p_correct_char",
        "margin_char",
    ),
    "loglikelihood": ("acc", "bpb", "logprob"),
    "rolling": ("bpb", "logprob"),
    "generate": ("exact_match",),
}

_COMMON_KEYS = {
    "name",
    "family",
    "version",
    "description",
    "kind",
    "request",
    "docs",
    "fewshot",
    "tags",
    "metrics",
}
_KIND_KEYS: dict[str, set[str]] = {
    "multiple_choice": {"prompt", "choices", "gold", "target_delimiter"},
    "loglikelihood": {"prompt", "continuation"},
    "rolling": {"text"},
    "generate": {"prompt", "target", "stop", "max_tokens", "extract"},
}


@dataclass(frozen=True)
class DocsSpec:
    generator: str | None = None
    seed: int = 0
    n: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None  # JSONL, one document per line


@dataclass(frozen=True)
class FewShotSpec:
    k: int = 0
    seed: int = 0
    separator: str = "\n\n"
    # Whether --num-fewshot may change k (demonstrations are then drawn as for the spec's k).
    overridable: bool = False


@dataclass(frozen=True)
class ExtractSpec:
    """How a number is read from a generation: the first or last match of an integer/decimal."""

    select: Literal["first", "last"] = "first"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    version: str
    request: RequestShape
    docs: DocsSpec
    metrics: tuple[str, ...]
    source_file: Path
    description: str = ""
    prompt: str = ""
    continuation: str = ""
    text: str = ""
    choices: str = ""  # doc field holding the list of choice texts
    gold: str = ""  # doc field holding the gold choice index
    target: str = ""  # template of the expected answer (generate)
    target_delimiter: str = " "
    stop: tuple[str, ...] = ("\n",)
    max_tokens: int = 32
    extract: ExtractSpec | None = None
    fewshot: FewShotSpec = FewShotSpec()
    tags: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return f"native:{self.request}"


def migrate(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The old spelling `kind: <request shape>` read as `kind: native, request: <shape>`
    (documented in docs/tasks.md; the shipped files use the new one)."""
    kind = raw.get("kind")
    if isinstance(kind, str) and kind in REQUEST_SHAPES and "request" not in raw:
        return {**raw, "kind": "native", "request": kind}
    return raw


def _fail(path: Path, message: str) -> EvalkitError:
    return EvalkitError(f"malformed task spec {path}: {message}")


def load_spec(path: Path) -> TaskSpec:
    """The `kind: native` spec in the file at `path` (old spelling accepted, see `migrate`)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise _fail(path, f"invalid YAML{where}") from None
    if not isinstance(raw, dict):
        raise _fail(path, "expected a mapping at the top level")
    return load_spec_raw(path, raw)


def load_spec_raw(path: Path, raw: Mapping[str, Any]) -> TaskSpec:
    """The `kind: native` spec of `raw`, parsed from the file at `path`."""
    raw = migrate(raw)
    if "kind" in raw and raw["kind"] != "native":
        raise _fail(
            path,
            f"kind must be one of native (or, old spelling, {', '.join(REQUEST_SHAPES)}), "
            f"got {raw['kind']!r}",
        )
    head = load_header(path, raw, kind="native", required=("kind", "request", "docs"))
    shape = raw["request"]
    if shape not in REQUEST_SHAPES:
        raise _fail(path, f"request must be one of {', '.join(REQUEST_SHAPES)}, got {shape!r}")
    unknown = set(raw) - _COMMON_KEYS - _KIND_KEYS[shape]
    if unknown:
        raise _fail(path, f"unknown key(s) for request {shape}: {', '.join(sorted(unknown))}")
    docs_raw = raw["docs"]
    if not isinstance(docs_raw, dict):
        raise _fail(path, "'docs' must be a mapping with 'generator' or 'path'")
    if ("generator" in docs_raw) == ("path" in docs_raw):
        raise _fail(path, "'docs' needs exactly one of 'generator' or 'path'")
    docs = DocsSpec(
        generator=docs_raw.get("generator"),
        seed=int(docs_raw.get("seed", 0)),
        n=int(docs_raw.get("n", 0)),
        params=dict(docs_raw.get("params", {}) or {}),
        path=(path.parent / docs_raw["path"]) if "path" in docs_raw else None,
    )
    if docs.generator is not None and docs.n <= 0:
        raise _fail(path, "'docs.n' must be a positive number of documents")
    allowed = KIND_METRICS[shape]
    metrics = tuple(raw.get("metrics") or allowed)
    bad = [m for m in metrics if m not in allowed]
    if bad:
        raise _fail(
            path,
            f"metric(s) {bad} not available for kind native with request {shape} ({', '.join(allowed)})",
        )
    required = {
        "multiple_choice": ("prompt", "choices", "gold"),
        "loglikelihood": ("prompt", "continuation"),
        "rolling": ("text",),
        "generate": ("prompt", "target"),
    }[shape]
    for key in required:
        if not isinstance(raw.get(key), str):
            raise _fail(path, f"request {shape} needs a string {key!r}")
    fewshot_raw = raw.get("fewshot") or {}
    fewshot = FewShotSpec(
        k=int(fewshot_raw.get("k", 0)),
        seed=int(fewshot_raw.get("seed", 0)),
        separator=str(fewshot_raw.get("separator", "\n\n")),
        overridable=bool(fewshot_raw.get("overridable", False)),
    )
    if fewshot.k and shape == "rolling":
        raise _fail(path, "rolling tasks take no few-shot examples")
    extract_raw = raw.get("extract")
    extract = None
    if extract_raw is not None:
        select = extract_raw.get("select", "first") if isinstance(extract_raw, dict) else None
        if select not in ("first", "last"):
            raise _fail(path, "'extract.select' must be 'first' or 'last'")
        extract = ExtractSpec(select=select)
    stop = raw.get("stop", ["\n"])
    if isinstance(stop, str):
        stop = [stop]
    return TaskSpec(
        name=head.name,
        family=head.family,
        version=head.version,
        request=shape,
        docs=docs,
        metrics=metrics,
        source_file=path,
        description=head.description,
        prompt=str(raw.get("prompt", "")),
        continuation=str(raw.get("continuation", "")),
        text=str(raw.get("text", "")),
        choices=str(raw.get("choices", "")),
        gold=str(raw.get("gold", "")),
        target=str(raw.get("target", "")),
        target_delimiter=str(raw.get("target_delimiter", " ")),
        stop=tuple(str(s) for s in stop),
        max_tokens=int(raw.get("max_tokens", 32)),
        extract=extract,
        fewshot=fewshot,
        tags=tuple(str(t) for t in raw.get("tags", []) or []),
    )


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
