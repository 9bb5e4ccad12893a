"""The one Task interface shared by native tasks and lm-eval tasks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evalkit.errors import EvalkitError
from evalkit.requests import Request, Response

if TYPE_CHECKING:  # types only: these modules build on this one
    from evalkit.tasks.executed import Execution, TestedProgram
    from evalkit.tasks.groups import GroupSpec
    from evalkit.tasks.options import RunOptions

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


@dataclass(frozen=True)
class Bucket:
    """The items a per-bucket row averages: those whose tags equal all of `tags` (k = 4; a
    length and a depth; a label condition). The row then carries these items' own n and the
    interval of their mean (Wilson for 0/1, bootstrap-t else), not the task's."""

    metric: str
    tags: tuple[tuple[str, TagValue], ...]

    def members(self, results: Sequence[ItemResult]) -> list[ItemResult]:
        return [r for r in results if all(r.tags.get(k) == v for k, v in self.tags)]


@dataclass(frozen=True)
class Summary:
    """A task-level number derived from all of a task's per-item results (a slope, a ratio, a
    difference of conditions), written to scores.parquet as its own metric row.

    The CI resamples whole `cluster`s (the values of that tag, e.g. the test document behind
    several items) with replacement. Only scores belong here: run facts (a window, counts of
    items left out) go to the task's `manifest_notes`. A summary that is not defined on a run
    (NaN: a slope over a single k) writes no row."""

    metric: str
    compute: Callable[[Sequence[ItemResult]], float]
    higher_is_better: bool = True
    cluster: str | None = "test_doc"
    bucket: Bucket | None = None  # a mean over a subset of the items: its own n and interval
    # A number computed at a parameter: the row's metric name and the parameter, `metric`
    # then being only the display label (`effective_length[recall>=0.5]`).
    base: str | None = None
    params: tuple[tuple[str, TagValue], ...] = ()


@dataclass(frozen=True)
class Turns:
    """A prompt split into demonstrations (question, answer) and the final question: how a
    chat template shows it (`evalkit.tasks.chat`)."""

    shots: tuple[tuple[str, str], ...]
    question: str


@dataclass(frozen=True)
class Needs:
    """What a task needs from the run beyond its items and the model's responses."""

    sandbox: bool = False  # scored by running generated programs (ScoringContext.run_programs)
    haystack: bool = False  # takes a user's filler text (--haystack; `Task.with_haystack`)


class ProgramRunner(Protocol):
    """Runs programs in isolation, each at most `timeout_seconds`; results in order."""

    def __call__(
        self, programs: Sequence[TestedProgram | str], timeout_seconds: float
    ) -> Sequence[Execution]: ...


@dataclass(frozen=True)
class ScoringContext:
    """What the run hands tasks at scoring time (only what their `needs` ask for)."""

    run_programs: ProgramRunner | None = None


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


class Identity(Protocol):
    """A task's name, family and version, declared once: a `Task` has them, and so does the spec
    a native task is built from (`evalkit.tasks.kinds.KindSpec`), which they are read from
    (`evalkit.tasks.specs.FromSpec`)."""

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> str: ...

    @property
    def version(self) -> str: ...


class Task(Identity, Protocol):
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

    # -- optional members: `TaskDefaults` gives a task that has none of them -------------------
    @property
    def needs(self) -> Needs: ...

    @property
    def summaries(self) -> tuple[Summary, ...]:
        """Task-level rows beside the per-item means (slopes, buckets...)."""
        ...

    @property
    def manifest_notes(self) -> Mapping[str, Any]:
        """Run facts the manifest keeps under the task's `notes` (empty: none)."""
        ...

    @property
    def manifest_fields(self) -> Mapping[str, Any]:
        """Fields the manifest's task entry carries beside the common ones (lm-eval's k...)."""
        ...

    def chat_turns(self, item: Item) -> Turns | None:
        """`item`'s prompt as chat turns; None: the task shows it as one user turn."""
        ...

    def with_haystack(self, path: Path) -> Task:
        """This task over a user's filler text (only when `needs.haystack`)."""
        ...

    @property
    def accepts_options(self) -> bool:
        """Whether `with_options` defines this task under --num-fewshot/--gen-kwargs/--seed."""
        ...

    def with_options(self, options: RunOptions) -> Task:
        """This task under the run's options (only when `accepts_options`)."""
        ...

    def in_family(self, family: str) -> Task:
        """This task counted in `family` (a suite's `families`; lm-eval tasks move)."""
        ...

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        """lm-eval groups whose aggregate rows this task feeds (`evalkit.group_scores`)."""
        ...

    def score_in(
        self,
        context: ScoringContext,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
    ) -> list[ItemResult]:
        """`score`, with what the run provides (a sandbox...) for tasks that need it."""
        ...


class TaskDefaults:
    """The optional members of `Task` for a task without them (subclass it first)."""

    needs: Needs = Needs()
    accepts_options: bool = False

    @property
    def name(self) -> str:
        raise NotImplementedError

    def with_options(self, options: RunOptions) -> Task:
        raise EvalkitError(f"task {self.name} takes no run options")

    def in_family(self, family: str) -> Task:
        return self  # type: ignore[return-value]  # (a TaskDefaults subclass is a Task)

    @property
    def groups(self) -> tuple[GroupSpec, ...]:
        return ()

    @property
    def summaries(self) -> tuple[Summary, ...]:
        return ()

    @property
    def manifest_notes(self) -> Mapping[str, Any]:
        return {}

    @property
    def manifest_fields(self) -> Mapping[str, Any]:
        return {}

    def chat_turns(self, item: Item) -> Turns | None:
        return None

    def with_haystack(self, path: Path) -> Task:
        raise EvalkitError(f"task {self.name} takes no haystack")

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        raise NotImplementedError

    def score_in(
        self,
        context: ScoringContext,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
    ) -> list[ItemResult]:
        return self.score(items, responses)


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
