"""Requests into token work: tokenize once, fit the model's window, set aside what the backend
cannot feed. The engine (engine.py) runs what this plans; nothing here touches a backend's
weights.

Tokenization follows lm-eval's conventions exactly (trailing spaces of a context move into the
continuation; context + continuation are encoded as one string and split at the length of the
encoded context; an empty context becomes the prefix token; rolling texts are cut into lm-eval's
disjoint windows), so per-item log-likelihoods match lm-eval's HF backend.

Loglikelihood requests and rolling windows both reduce to (context, continuation) token units;
generation requests become `GenerationJob`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from evalkit.backends.base import GenerationJob, Tokenizer
from evalkit.errors import ContextTooLongError
from evalkit.requests import Generate, Loglikelihood, Request, RollingLoglikelihood, TokenLogprobs

# "error": a request longer than the window stops the run before any work is done.
# "left": drop the oldest context tokens until it fits (as lm-eval does silently), counted.
Truncation = Literal["error", "left"]
Unit = tuple[tuple[int, ...], tuple[int, ...]]


class Encoder:
    """Memoized tokenization so every distinct string is encoded once per run."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._default: dict[str, tuple[int, ...]] = {}
        self._plain: dict[str, tuple[int, ...]] = {}

    def encode(self, text: str) -> tuple[int, ...]:
        ids = self._default.get(text)
        if ids is None:
            ids = tuple(self.tokenizer.encode(text))
            self._default[text] = ids
        return ids

    def encode_plain(self, text: str) -> tuple[int, ...]:
        ids = self._plain.get(text)
        if ids is None:
            ids = tuple(self.tokenizer.encode_plain(text))
            self._plain[text] = ids
        return ids

    def pair(self, context: str, continuation: str) -> Unit:
        if context == "":
            cont = self.encode_plain(continuation)
            if not cont:
                raise ValueError("a loglikelihood request with empty context and continuation")
            prefix = self.tokenizer.prefix_token_id
            if cont[0] == prefix:
                return cont[:1], cont[1:]
            return (prefix,), cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx) :]


def rolling_windows(tokens: Sequence[int], prefix_token: int, max_length: int) -> list[Unit]:
    """Disjoint windows covering every token once, each conditioned on as much preceding text
    as the window allows (lm-eval's rolling windows with context length 1)."""
    out: list[Unit] = []
    if not tokens:
        return out
    first = min(max_length, len(tokens))
    out.append(((prefix_token,), tuple(tokens[:first])))
    predicted = first
    while predicted < len(tokens):
        n_pred = min(len(tokens) - predicted, max_length)
        end = predicted + n_pred
        window = tokens[max(end - max_length - 1, 0) : end - 1]
        context = tuple(window[: len(window) - (n_pred - 1)])
        out.append((context, tuple(tokens[end - n_pred : end])))
        predicted = end
    return out


@dataclass(frozen=True)
class Plan:
    """What a run's distinct requests (by hash) amount to in tokens."""

    units_of: Mapping[str, tuple[Unit, ...]]  # scoring requests -> their token units
    jobs: Mapping[str, GenerationJob]  # generation requests
    truncated: frozenset[str]  # cut on the left to fit the window (--truncation left)
    skipped: frozenset[str]  # within the window, but past what the backend can feed


def plan_requests(
    requests: Mapping[str, Request],
    encoder: Encoder,
    window: int,
    truncation: Truncation,
    feed_limit: int | None = None,
) -> Plan:
    """Every request (by hash) as token units or a generation job, each length checked against
    `window` before any work is done. `feed_limit`: the most tokens the backend can feed, when
    under the window (`FeedLimited`)."""
    units_of: dict[str, tuple[Unit, ...]] = {}
    jobs: dict[str, GenerationJob] = {}
    truncated: set[str] = set()
    for h, req in requests.items():
        if isinstance(req, Loglikelihood):
            unit, cut = _fit(h, encoder.pair(req.context, req.continuation), window, truncation)
            units_of[h] = (unit,)
            if cut:
                truncated.add(h)
        elif isinstance(req, RollingLoglikelihood):
            tokens = encoder.encode(req.text)
            prefix = encoder.tokenizer.prefix_token_id
            units_of[h] = tuple(rolling_windows(tokens, prefix, window))
        elif isinstance(req, TokenLogprobs):
            units_of[h] = (_whole_sequence(h, req, encoder, window),)
        elif isinstance(req, Generate):
            job, cut = _generation_job(h, req, encoder, window, truncation)
            jobs[h] = job
            if cut:
                truncated.add(h)
        else:  # pragma: no cover - exhaustive over Request
            raise TypeError(f"unknown request type {type(req).__name__}")
    skipped: set[str] = set()
    if feed_limit is not None and feed_limit < window:
        skipped = _unfed(units_of, jobs, feed_limit)
        units_of = {h: u for h, u in units_of.items() if h not in skipped}
        jobs = {h: j for h, j in jobs.items() if h not in skipped}
    return Plan(units_of, jobs, frozenset(truncated), frozenset(skipped))


def _fit(h: str, unit: Unit, window: int, truncation: Truncation) -> tuple[Unit, bool]:
    """`unit` within the window, and whether its context was cut on the left to fit."""
    ctx, cont = unit
    if not cont:
        raise ValueError(f"request {h[:12]} has an empty continuation after tokenization")
    need = len(ctx) + len(cont) - 1
    if need <= window:
        return unit, False
    if truncation == "error" or len(cont) > window:
        raise ContextTooLongError(
            f"request {h[:12]} needs {need} tokens but the model's window is {window} "
            "(use --truncation left to drop the oldest context tokens, counted in the run)"
        )
    return (ctx[need - window :], cont), True


def _whole_sequence(h: str, req: TokenLogprobs, encoder: Encoder, window: int) -> Unit:
    if req.tokens is not None:
        unit: Unit = (req.tokens[:1], req.tokens[1:])
    else:
        unit = ((encoder.tokenizer.prefix_token_id,), encoder.encode_plain(req.text or ""))
    need = len(unit[0]) + len(unit[1]) - 1
    if need > window:
        # Per-token probes are defined on the whole sequence: never cut them.
        raise ContextTooLongError(
            f"request {h[:12]} needs {need} tokens but the model's window is {window}"
        )
    return unit


def _generation_job(
    h: str, req: Generate, encoder: Encoder, window: int, truncation: Truncation
) -> tuple[GenerationJob, bool]:
    """The job for `req`, and whether its prompt was cut on the left to fit."""
    prompt = encoder.encode(req.prompt)
    room = window - req.max_tokens
    if room < 1:
        raise ContextTooLongError(
            f"request {h[:12]} asks for {req.max_tokens} new tokens but the "
            f"model's window is {window}"
        )
    cut = len(prompt) > room
    if cut:
        if truncation == "error":
            raise ContextTooLongError(
                f"request {h[:12]} has a {len(prompt)}-token prompt plus "
                f"{req.max_tokens} new tokens, over the model's window of {window} "
                "(use --truncation left to drop the oldest prompt tokens, counted)"
            )
        prompt = prompt[-room:]
    job = GenerationJob(
        prompt=prompt,
        stop=req.stop,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        n=req.n,
        seed=req.seed,
    )
    return job, cut


def _unfed(
    units_of: Mapping[str, Sequence[Unit]], jobs: Mapping[str, GenerationJob], limit: int
) -> set[str]:
    """Requests the model's window allows but the backend cannot feed are skipped whole
    (their items are left out and counted), never cut: items must not depend on it."""
    skipped = {
        h for h, units in units_of.items() if any(len(c) + len(u) - 1 > limit for c, u in units)
    }
    # The last new token is only predicted, never fed.
    skipped |= {h for h, job in jobs.items() if len(job.prompt) + job.max_tokens - 1 > limit}
    return skipped
