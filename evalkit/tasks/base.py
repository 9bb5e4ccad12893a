"""The one Task interface shared by native tasks and lm-eval tasks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from evalkit.requests import Request, Response

TagValue = str | int | float | bool
# A per-item metric is a number, or (for lm-eval's weighted aggregations such as perplexity)
# the tuple lm-eval's process_results returns.
MetricValue = float | tuple[float, ...]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Item:
    """One evaluated document: the requests it needs and what it is scored against."""

    doc_id: int
    prompt: str
    requests: tuple[Request, ...]
    target: str
    tags: tuple[tuple[str, TagValue], ...] = ()


@dataclass(frozen=True)
class ItemResult:
    doc_id: int
    prompt_hash: str
    # One value per choice (multiple choice), per continuation, or the one total of a rolling
    # text; empty for generation.
    loglikelihoods: tuple[float, ...]
    prediction: str | None
    target: str
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    tags: Mapping[str, TagValue] = field(default_factory=dict)
    truncated: bool = False


def mean(values: Sequence[MetricValue]) -> float:
    if not values:
        raise ValueError("cannot aggregate an empty metric")
    total = 0.0
    for v in values:
        if isinstance(v, tuple):
            raise TypeError("mean of a tuple-valued metric")
        total += float(v)
    return total / len(values)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool = True
    aggregate: Callable[[Sequence[MetricValue]], float] = mean
    # True when `aggregate` is the plain mean: CIs can then be computed in closed form.
    is_mean: bool = True


class TextTokenizer(Protocol):
    """The text side of a model's tokenizer. Backends' tokenizers satisfy it."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def prefix_token_id(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """As the engine encodes prompts (the tokenizer's default special tokens)."""
        ...

    def encode_plain(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class TokenizerInfo(TextTokenizer, Protocol):
    """What a task may ask of the model when it builds items (e.g. to draw random token ids,
    to make texts exactly N tokens long, or to know how long they may be)."""

    @property
    def max_context(self) -> int | None:
        """The model's window in tokens (None: unknown; tasks that need it raise)."""
        ...


@dataclass(frozen=True)
class WindowedTokenizer:
    """A tokenizer and the model's window, as `evalkit.api.score` hands them to tasks: the
    window comes from the backend (the checkpoint's config), not from a task's YAML."""

    tokenizer: TextTokenizer
    max_context: int | None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.prefix_token_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_plain(self, text: str) -> list[int]:
        return self.tokenizer.encode_plain(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)


class Task(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def source(self) -> str:
        """'native' or 'lm-eval'."""
        ...

    @property
    def metrics(self) -> tuple[MetricSpec, ...]: ...

    def items(
        self, limit: int | None = None, tokenizer: TokenizerInfo | None = None
    ) -> Sequence[Item]:
        """The task's items, first `limit` of them if given. Deterministic given the tokenizer;
        tasks that need one raise EvalkitError when it is None."""
        ...

    def content_hash(self, items: Sequence[Item]) -> str:
        """Changes exactly when the items (prompts, requests, targets) change."""
        ...

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        """Per-item results; `responses[i]` answers `items[i].requests` in order."""
        ...


def items_hash(items: Sequence[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(str(it.doc_id).encode())
        h.update(it.target.encode())
        for r in it.requests:
            h.update(r.hash.encode())
    return h.hexdigest()


def check_metric_names(task: str, names: Sequence[str]) -> None:
    reserved = {"task", "doc_id", "prompt_hash", "loglikelihoods", "prediction", "target"}
    clash = reserved.intersection(names)
    if clash:
        raise ValueError(f"task {task}: metric name(s) {sorted(clash)} clash with sample columns")


def responses_for(item: Item, responses: Mapping[str, Response]) -> tuple[Response, ...]:
    return tuple(responses[r.hash] for r in item.requests)
