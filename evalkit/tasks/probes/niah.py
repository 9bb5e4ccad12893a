"""Needle-in-a-haystack tasks (RULER-style): recall of needle values in a greedy generation
over a grid of context lengths x needle depths, and the effective context length.

Configured by `kind: probe`, `probe: niah` YAML (tasks/longctx/); prompts come from
`evalkit.tasks.probes.haystack`. Lengths are whole sequences in the model's tokens: prompt +
`max_new_tokens` answer tokens, so a length equal to the model's window runs. Definitions in
docs/longctx.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError, TaskCannotRun
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    Response,
)
from evalkit.tasks.base import (
    Item,
    ItemResult,
    MetricSpec,
    Needs,
    TagValue,
    TaskDefaults,
    TokenizerInfo,
    items_hash,
    text_hash,
)
from evalkit.tasks.probes.common import Bucket, ProbeSpec, Summary, group_mean
from evalkit.tasks.probes.haystack import (
    HAYSTACKS,
    VARIANTS,
    Haystack,
    NiahPrompt,
    TooShortError,
    build_prompt,
    draw_needles,
    file_haystack,
    noise_haystack,
    prose_haystack,
)
from evalkit.tasks.specs import FromSpec

WINDOW = "window"  # in `lengths`: the model's own window
DEFAULT_THRESHOLD = 0.85
DEFAULT_EXTRA = {"single": 0, "multikey": 3, "multivalue": 3, "multiquery": 3}
STOP = ("\n",)
# Generated tokens beyond the expected answer's own (room for ", " and a closing period).
ANSWER_MARGIN = 4


def recall(answers: Sequence[str], generated: str) -> float:
    """RULER's string match: the share of expected values found anywhere in the text."""
    return sum(1 for a in answers if a in generated) / len(answers)


def effective_length(recall_by_length: Mapping[int, float], threshold: float) -> int:
    """The longest length such that it and every shorter length have recall >= threshold
    (0 when the shortest one already falls below)."""
    best = 0
    for length in sorted(recall_by_length):
        if not recall_by_length[length] >= threshold:
            break
        best = length
    return best


class NiahTask(FromSpec, TaskDefaults):
    spec: ProbeSpec

    needs = Needs(haystack=True)

    source = "native"
    keys = frozenset(
        {"variant", "haystack", "lengths", "depths", "samples", "seed", "max_new_tokens",
         "threshold", "extra_needles"}
    )  # fmt: skip

    def __init__(self, spec: ProbeSpec, haystack: Haystack | None = None) -> None:
        self.spec = spec
        p = spec.params
        unknown = set(p) - self.keys
        if unknown:
            raise self._fail(f"unknown key(s) for probe niah: {', '.join(sorted(unknown))}")
        self.variant = str(p.get("variant", "single"))
        if self.variant not in VARIANTS:
            raise self._fail(f"'variant' must be one of {', '.join(VARIANTS)}")
        hay = str(p.get("haystack", "noise"))
        if hay not in HAYSTACKS:
            raise self._fail(f"'haystack' must be one of {', '.join(HAYSTACKS)}")
        self.seed = int(p.get("seed", 0))
        self.haystack = haystack or (
            noise_haystack() if hay == "noise" else prose_haystack(self.seed)
        )
        raw_lengths = p.get("lengths")
        if not isinstance(raw_lengths, list) or not raw_lengths:
            raise self._fail("'lengths' must be a non-empty list of token counts and/or 'window'")
        self.lengths: tuple[int | str, ...] = tuple(
            WINDOW if x == WINDOW else self._positive(x, "lengths") for x in raw_lengths
        )
        depths = p.get("depths", [0, 25, 50, 75, 100])
        if not isinstance(depths, list) or not depths:
            raise self._fail("'depths' must be a non-empty list of percents")
        self.depths = tuple(sorted({int(d) for d in depths}))
        if any(not 0 <= d <= 100 for d in self.depths):
            raise self._fail("'depths' must be percents between 0 and 100")
        self.samples = self._positive(p.get("samples", 4), "samples")
        # None: the answer's tokens under the model's tokenizer + ANSWER_MARGIN.
        self.max_new_spec = (
            self._positive(p["max_new_tokens"], "max_new_tokens") if "max_new_tokens" in p else None
        )
        self.max_new = 0  # set by `items()`
        self.threshold = float(p.get("threshold", DEFAULT_THRESHOLD))
        if not 0 < self.threshold <= 1:
            raise self._fail("'threshold' must be in (0, 1]")
        self.extra = int(p.get("extra_needles", DEFAULT_EXTRA[self.variant]))
        if self.variant == "single" and self.extra:
            raise self._fail("variant single has no extra needles")
        if self.variant != "single" and self.extra < 1:
            raise self._fail(f"variant {self.variant} needs extra_needles >= 1")
        # Set by `items()` for the model at hand.
        self.window: int | None = None
        self.run_lengths: tuple[int, ...] = ()
        self.skipped: dict[int, tuple[int, str]] = {}  # length -> (items skipped, why)

    # -- Task protocol ---------------------------------------------------------------------
    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        base = (MetricSpec("recall"), MetricSpec("value_ll"), MetricSpec("value_ll_gain"))
        # Distractors are in the context too: beating them takes finding the asked key, not
        # just copying a number that is there.
        return base + ((MetricSpec("distractor_ll_gain"),) if self.variant == "multikey" else ())

    def content_hash(self, items: Sequence[Item]) -> str:
        return items_hash(items)

    def with_haystack(self, path: Path) -> NiahTask:
        """The same task over the sentences of a user's text file."""
        return NiahTask(self.spec, file_haystack(path))

    def resolve_lengths(self, window: int | None) -> tuple[list[int], dict[int, str]]:
        """(lengths to run, ascending; lengths skipped -> why) for a model's window."""
        if window is None:
            raise TaskCannotRun(f"task {self.name} needs the model's window (max context)")
        wanted = sorted({window if x == WINDOW else int(x) for x in self.lengths})
        run = [n for n in wanted if n <= window]
        why = {
            n: f"longer than the model's window of {window} tokens" for n in wanted if n > window
        }
        return run, why

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        if tokenizer is None:
            raise EvalkitError(f"task {self.name} needs the model's tokenizer to build its items")
        window = tokenizer.max_context
        run, why = self.resolve_lengths(window)
        samples = self.samples if limit is None else min(limit, self.samples)
        # Fresh needles for every item, so items are independent (plain CIs hold).
        drawn = {
            (n, d, s): draw_needles(random.Random(f"{self.seed}:{self.variant}:{n}:{d}:{s}"),
                                    self.variant, self.haystack, self.extra)
            for n in run for d in self.depths for s in range(samples)
        }  # fmt: skip
        need = max(
            (len(tokenizer.encode_plain(" " + ", ".join(a))) for _, _, a in drawn.values()),
            default=0,
        )
        if self.max_new_spec is None:
            self.max_new = need + ANSWER_MARGIN
        elif need > self.max_new_spec:
            raise self._fail(
                f"max_new_tokens {self.max_new_spec} cannot hold the answer ({need} tokens)"
            )
        else:
            self.max_new = self.max_new_spec
        skipped: dict[int, tuple[int, str]] = {n: (len(self.depths) * samples, r)
                                               for n, r in why.items()}  # fmt: skip
        out: list[Item] = []
        kept: list[int] = []
        for length in run:
            cell = self._cell(tokenizer, drawn, length, samples, len(out))
            if cell is None:
                skipped[length] = (
                    len(self.depths) * samples,
                    f"the needles, question and {self.max_new} answer tokens do not fit "
                    f"in {length} tokens",
                )
                continue
            out.extend(cell)
            kept.append(length)
        if not out:
            by_reason: dict[str, list[str]] = {}
            for n, (_, r) in sorted(skipped.items()):
                by_reason.setdefault(r, []).append(str(n))
            reasons = "; ".join(f"{', '.join(ns)}: {r}" for r, ns in by_reason.items())
            raise TaskCannotRun(f"task {self.name}: no length can run ({reasons})")
        self.window = window
        self.run_lengths = tuple(kept)
        self.skipped = dict(sorted(skipped.items()))
        return out

    def _cell(
        self, tok: TokenizerInfo, drawn: Mapping[Any, Any], length: int, samples: int,
        first_id: int,
    ) -> list[Item] | None:  # fmt: skip
        """Every (depth, sample) item of one length; None when one does not fit in it."""
        cell: list[Item] = []
        for depth in self.depths:
            for s in range(samples):
                needles, keys, answers = drawn[(length, depth, s)]
                rng = random.Random(f"{self.seed}:{s}:{length}:{depth}")
                try:
                    np_ = build_prompt(
                        tok, self.haystack, needles, keys, answers, length - self.max_new,
                        depth / 100, rng,
                    )  # fmt: skip
                except TooShortError:
                    return None
                except EvalkitError as exc:
                    raise EvalkitError(f"task {self.name}: {exc}") from None
                cell.append(self._item(first_id + len(cell), np_, length, depth, s))
        return cell

    def _item(self, doc_id: int, np_: NiahPrompt, length: int, depth: int, sample: int) -> Item:
        requests: list[Request] = [Generate(np_.prompt, stop=STOP, max_tokens=self.max_new)]
        requests += [Loglikelihood(np_.prompt, " " + v) for v in np_.answers]
        requests += [Loglikelihood(np_.prompt, " " + v) for v in np_.controls]
        requests += [Loglikelihood(np_.prompt, " " + v) for v in self._distractors(np_)]
        tags: tuple[tuple[str, TagValue], ...] = (
            ("family", self.family),
            ("variant", self.variant),
            ("haystack", self.haystack.label),
            ("length", length),
            ("depth", depth),
            ("depth_actual", round(np_.depth, 4)),
            ("sample", sample),
            ("n_answers", len(np_.answers)),
        )
        return Item(doc_id, np_.prompt, tuple(requests), ", ".join(np_.answers), tags)

    def _distractors(self, np_: NiahPrompt) -> list[str]:
        if self.variant != "multikey":
            return []
        return [n.value for n in np_.needles if n.value not in np_.answers]

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        out = []
        for it, resps in zip(items, responses, strict=True):
            gen, *lls = resps
            if not isinstance(gen, GenerateResult):
                raise TypeError(f"expected a generation, got {type(gen).__name__}")
            values: list[float] = []
            for r in lls:
                if not isinstance(r, LoglikelihoodResult):
                    raise TypeError(f"expected a loglikelihood result, got {type(r).__name__}")
                values.append(r.logprob)
            n = int(dict(it.tags)["n_answers"])
            answers = it.target.split(", ")
            text = gen.texts[0]
            ll = math.fsum(values[:n]) / n
            control = math.fsum(values[n : 2 * n]) / n
            metrics = {
                "recall": recall(answers, text),
                "value_ll": ll,
                "value_ll_gain": ll - control,
            }
            if self.variant == "multikey":
                distractors = values[2 * n :]
                metrics["distractor_ll_gain"] = ll - math.fsum(distractors) / len(distractors)
            out.append(
                ItemResult(
                    doc_id=it.doc_id,
                    prompt_hash=text_hash(it.prompt),
                    loglikelihoods=tuple(values),
                    prediction=text,
                    target=it.target,
                    metrics=metrics,
                    tags=dict(it.tags),
                )
            )
        return out

    # -- task-level rows -------------------------------------------------------------------
    @property
    def summaries(self) -> tuple[Summary, ...]:
        out: list[Summary] = []
        for n in self.run_lengths:
            for m in ("recall", "value_ll_gain"):
                out.append(Summary(f"{m}[len={n}]", _by(m, n), cluster=None,
                                   bucket=Bucket(m, (("length", n),))))  # fmt: skip
            for d in self.depths:
                out.append(Summary(f"recall[len={n},depth={d}]", _by("recall", n, d), cluster=None,
                                   bucket=Bucket("recall", (("length", n), ("depth", d)))))  # fmt: skip
        out.append(
            Summary(
                f"effective_length[recall>={self.threshold:g}]",
                _effective(self.threshold),
                cluster=None,  # items are independent draws (fresh needles each)
                base="effective_length",
                params=(("threshold", self.threshold),),
            )
        )
        return tuple(out)

    @property
    def manifest_notes(self) -> dict[str, Any]:
        """What the manifest records beside the task's items: the haystack, the window, the
        lengths run and skipped (with why) and the effective-length threshold."""
        return {
            "haystack": self.haystack.label,
            "variant": self.variant,
            "model_window": self.window,
            "lengths_run": list(self.run_lengths),
            "depths": list(self.depths),
            "skipped_lengths": {str(n): why for n, (_, why) in self.skipped.items()},
            "skipped_items": {f"len={n}": count for n, (count, _) in self.skipped.items()},
            "effective_length_threshold": self.threshold,
            "max_new_tokens": self.max_new,
        }

    def _positive(self, value: Any, key: str) -> int:
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise self._fail(f"{key!r} must hold positive integers, got {value!r}") from None
        if n < 1:
            raise self._fail(f"{key!r} must hold positive integers, got {value!r}")
        return n

    def _fail(self, message: str) -> EvalkitError:
        return EvalkitError(f"malformed task spec {self.spec.source_file}: {message}")


def _by(metric: str, length: int, depth: int | None = None) -> Any:
    def compute(results: Sequence[ItemResult]) -> float:
        if depth is None:
            return group_mean(results, metric, "length", length)
        vals = [
            float(r.metrics[metric])  # type: ignore[arg-type]
            for r in results
            if r.tags.get("length") == length and r.tags.get("depth") == depth
        ]
        return math.fsum(vals) / len(vals) if vals else float("nan")

    return compute


def _effective(threshold: float) -> Any:
    def compute(results: Sequence[ItemResult]) -> float:
        lengths = sorted({int(r.tags["length"]) for r in results})
        by = {n: group_mean(results, "recall", "length", n) for n in lengths}
        return float(effective_length(by, threshold))

    return compute
