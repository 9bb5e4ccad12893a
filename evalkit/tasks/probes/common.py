"""What probe tasks share: their YAML spec, the base class that checks a probe's keys,
summaries computed from per-item results, and rendering of multiple-choice documents with
templates that fail loudly."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit import metrics as M
from evalkit.errors import EvalkitError
from evalkit.requests import LoglikelihoodResult, Response
from evalkit.tasks.base import (  # noqa: F401
    Bucket,
    Item,
    ItemResult,
    MetricSpec,
    Summary,
    TagValue,
    TaskDefaults,
    TokenizerInfo,
    items_hash,
)
from evalkit.tasks.generators import get_generator
from evalkit.tasks.specs import FromSpec
from evalkit.tasks.templates import Renderer

# Per-item metrics every multiple-choice probe reports (all from `evalkit.metrics`).
MC_METRICS: tuple[MetricSpec, ...] = tuple(
    MetricSpec(m, higher_is_better=M.CATALOG[m].higher_is_better)
    for m in ("acc", "acc_norm", "p_correct", "p_correct_char", "margin", "margin_char", "bpb")
)


@dataclass(frozen=True)
class ProbeSpec:
    """A `kind: probe` YAML file: the common keys, and the probe's own keys in `params`."""

    name: str
    family: str
    version: str
    probe: str
    source_file: Path
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return f"probe:{self.probe}"


def group_mean(results: Sequence[ItemResult], metric: str, tag: str, value: TagValue) -> float:
    """Mean of `metric` over the results whose tag `tag` equals `value` (NaN when none)."""
    vals = [float(r.metrics[metric]) for r in results if r.tags.get(tag) == value]  # type: ignore[arg-type]
    return math.fsum(vals) / len(vals) if vals else float("nan")


def ols_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (NaN with fewer than two distinct xs)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if len({x for x, _ in pts}) < 2:
        return float("nan")
    mx = math.fsum(x for x, _ in pts) / len(pts)
    my = math.fsum(y for _, y in pts) / len(pts)
    sxx = math.fsum((x - mx) ** 2 for x, _ in pts)
    return math.fsum((x - mx) * (y - my) for x, y in pts) / sxx


def load_docs(task: str, docs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Documents from a `docs: {generator, seed, n, params}` mapping."""
    if not isinstance(docs, Mapping) or "generator" not in docs:
        raise EvalkitError(f"task {task}: 'docs' must name a generator")
    try:
        gen = get_generator(str(docs["generator"]))
    except KeyError as exc:
        raise EvalkitError(f"task {task}: {exc.args[0]}") from None
    n = int(docs.get("n", 0))
    if n <= 0:
        raise EvalkitError(f"task {task}: 'docs.n' must be a positive number of documents")
    try:
        return gen(random.Random(int(docs.get("seed", 0))), n, **dict(docs.get("params") or {}))
    except TypeError as exc:
        raise EvalkitError(f"task {task}: bad generator params: {exc}") from None


def mc_values(
    resps: Sequence[Response], choices: Sequence[str], gold: int, delimiter: str
) -> tuple[tuple[float, ...], dict[str, float]]:
    lls: list[float] = []
    for r in resps:
        if not isinstance(r, LoglikelihoodResult):
            raise TypeError(f"expected a loglikelihood result, got {type(r).__name__}")
        lls.append(r.logprob)
    values = M.multiple_choice(lls, choices, gold, delimiter)
    return tuple(lls), {m.name: values[m.name] for m in MC_METRICS}


class Probe(FromSpec, TaskDefaults):
    """A probe task of a `kind: probe` YAML file: its own keys are checked against `keys`
    (`required` among them) when it is built, so a typo fails naming the file."""

    spec: ProbeSpec

    source = "native"
    keys: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        unknown = set(spec.params) - self.keys
        if unknown:
            raise EvalkitError(
                f"malformed task spec {spec.source_file}: unknown key(s) for probe "
                f"{spec.probe}: {', '.join(sorted(unknown))}"
            )
        missing = self.required - set(spec.params)
        if missing:
            raise EvalkitError(
                f"malformed task spec {spec.source_file}: probe {spec.probe} needs "
                f"{', '.join(sorted(missing))}"
            )
        self.r = Renderer(spec.name)

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return MC_METRICS

    @property
    def summaries(self) -> tuple[Summary, ...]:
        return ()

    def content_hash(self, items: Sequence[Item]) -> str:
        return items_hash(items)

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        raise NotImplementedError

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        raise NotImplementedError

    def _p(self, key: str, default: Any = None) -> Any:
        return self.spec.params.get(key, default)

    def _fail(self, message: str) -> EvalkitError:
        return EvalkitError(f"malformed task spec {self.spec.source_file}: {message}")

    def _need_tokenizer(self, tokenizer: TokenizerInfo | None) -> TokenizerInfo:
        if tokenizer is None:
            raise EvalkitError(f"task {self.name} needs the model's tokenizer to build its items")
        return tokenizer
