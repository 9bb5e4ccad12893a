"""Between requests and a backend: tokenize once, deduplicate, cache, group, batch, progress.

Tokenization follows lm-eval's conventions exactly (trailing spaces of a context move into the
continuation; context + continuation are encoded as one string and split at the length of the
encoded context; an empty context becomes the prefix token; rolling texts are cut into lm-eval's
disjoint windows), so per-item log-likelihoods match lm-eval's HF backend.

Loglikelihood requests and rolling windows both reduce to (context, continuation) token units.
Units that share a context form one `ScoringGroup` that the backend scores in one pass over the
context. Groups are sorted longest first and packed into batches under the backend's token
budget. Results are cached per request after every batch.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from evalkit.backends.base import (
    Backend,
    FeedLimited,
    GenerationJob,
    OnePassBackend,
    ScoringGroup,
    Tokenizer,
    TokenScore,
)
from evalkit.cache import ResultCache, cache_key
from evalkit.errors import ContextTooLongError, DamagedModelError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    Response,
    RollingLoglikelihood,
    RollingResult,
    TokenLogprobs,
    TokenLogprobsResult,
)

Truncation = Literal["error", "left"]
Unit = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class EngineOptions:
    # "error": a request longer than the window stops the run before any work is done.
    # "left": drop the oldest context tokens until it fits (as lm-eval does silently), counted.
    truncation: Truncation = "error"
    progress: bool = True


@dataclass(frozen=True)
class EngineStats:
    requests: int
    unique: int
    reused: int
    computed: int
    truncated: int
    scored_tokens: int
    generated_jobs: int
    # Requests within the model's window that the backend cannot feed (never computed).
    skipped: int = 0


@dataclass(frozen=True)
class EngineResult:
    responses: dict[str, Response]
    truncated: frozenset[str]
    stats: EngineStats
    skipped: frozenset[str] = frozenset()


class _Encoder:
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


@dataclass
class _Plan:
    units_of: dict[str, list[Unit]] = field(default_factory=dict)  # request hash -> units
    jobs: dict[str, GenerationJob] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)


class Engine:
    def __init__(
        self,
        backend: Backend,
        cache: ResultCache | None = None,
        options: EngineOptions | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.options = options or EngineOptions()
        self._encoder = _Encoder(backend.tokenizer)

    # -- keys ---------------------------------------------------------------------------
    def _key(self, request_hash: str, truncated: bool) -> str:
        settings = dict(self.backend.settings)
        if truncated:
            settings["truncation"] = "left"
        return cache_key(self.backend.model_fingerprint, settings, request_hash)

    # -- planning -----------------------------------------------------------------------
    def _fit(self, h: str, unit: Unit, plan: _Plan) -> Unit:
        ctx, cont = unit
        window = self.backend.max_length
        if not cont:
            raise ValueError(f"request {h[:12]} has an empty continuation after tokenization")
        need = len(ctx) + len(cont) - 1
        if need <= window:
            return unit
        if self.options.truncation == "error" or len(cont) > window:
            raise ContextTooLongError(
                f"request {h[:12]} needs {need} tokens but the model's window is {window} "
                "(use --truncation left to drop the oldest context tokens, counted in the run)"
            )
        plan.truncated.add(h)
        return ctx[need - window :], cont

    def _plan(self, requests: dict[str, Request]) -> _Plan:
        plan = _Plan()
        enc = self._encoder
        window = self.backend.max_length
        for h, req in requests.items():
            if isinstance(req, Loglikelihood):
                plan.units_of[h] = [self._fit(h, enc.pair(req.context, req.continuation), plan)]
            elif isinstance(req, RollingLoglikelihood):
                tokens = enc.encode(req.text)
                plan.units_of[h] = rolling_windows(tokens, enc.tokenizer.prefix_token_id, window)
            elif isinstance(req, TokenLogprobs):
                if req.tokens is not None:
                    unit: Unit = (req.tokens[:1], req.tokens[1:])
                else:
                    unit = ((enc.tokenizer.prefix_token_id,), enc.encode_plain(req.text or ""))
                need = len(unit[0]) + len(unit[1]) - 1
                if need > window:
                    # Per-token probes are defined on the whole sequence: never cut them.
                    raise ContextTooLongError(
                        f"request {h[:12]} needs {need} tokens but the model's window is {window}"
                    )
                plan.units_of[h] = [unit]
            elif isinstance(req, Generate):
                prompt = enc.encode(req.prompt)
                room = window - req.max_tokens
                if room < 1:
                    raise ContextTooLongError(
                        f"request {h[:12]} asks for {req.max_tokens} new tokens but the "
                        f"model's window is {window}"
                    )
                if len(prompt) > room:
                    if self.options.truncation == "error":
                        raise ContextTooLongError(
                            f"request {h[:12]} has a {len(prompt)}-token prompt plus "
                            f"{req.max_tokens} new tokens, over the model's window of {window} "
                            "(use --truncation left to drop the oldest prompt tokens, counted)"
                        )
                    prompt = prompt[-room:]
                    plan.truncated.add(h)
                plan.jobs[h] = GenerationJob(
                    prompt=prompt,
                    stop=req.stop,
                    max_tokens=req.max_tokens,
                    temperature=req.temperature,
                    n=req.n,
                    seed=req.seed,
                )
            else:  # pragma: no cover - exhaustive over Request
                raise TypeError(f"unknown request type {type(req).__name__}")
        if isinstance(self.backend, FeedLimited) and self.backend.feed_limit < window:
            self._skip_unfed(plan, self.backend.feed_limit)
        return plan

    def units(self, requests: Sequence[Request]) -> dict[str, list[Unit]]:
        """The token units each scoring request is planned into (request hash -> units), as
        `run` would score them; generation requests have none."""
        return self._plan({r.hash: r for r in requests}).units_of

    @staticmethod
    def _skip_unfed(plan: _Plan, limit: int) -> None:
        """Requests the model's window allows but the backend cannot feed are skipped whole
        (their items are left out and counted), never cut: items must not depend on it."""
        for h, units in list(plan.units_of.items()):
            if any(len(c) + len(u) - 1 > limit for c, u in units):
                plan.skipped.add(h)
                del plan.units_of[h]
        for h, job in list(plan.jobs.items()):
            # The last new token is only predicted, never fed.
            if len(job.prompt) + job.max_tokens - 1 > limit:
                plan.skipped.add(h)
                del plan.jobs[h]

    # -- running ------------------------------------------------------------------------
    def run(self, requests: Sequence[Request]) -> EngineResult:
        unique: dict[str, Request] = {}
        for r in requests:
            unique.setdefault(r.hash, r)
        plan = self._plan(unique)  # validates every length before any work is done
        keys = {h: self._key(h, h in plan.truncated) for h in unique if h not in plan.skipped}
        responses: dict[str, Response] = {}
        if self.cache is not None:
            cached = self.cache.get_many(keys.values())
            for h, k in keys.items():
                if k in cached:
                    responses[h] = cached[k]
        reused = len(responses)
        missing_units = {h: u for h, u in plan.units_of.items() if h not in responses}
        missing_jobs = {h: j for h, j in plan.jobs.items() if h not in responses}

        groups = self._groups(missing_units)
        batches = self._scoring_batches(groups)
        gen_batches = self._generation_batches(missing_jobs)
        total = sum(len(g.continuations) for g in groups) + len(missing_jobs)
        scored_tokens = 0

        with _progress(self.options.progress, total) as advance:
            pending = {h: len(set(u)) for h, u in missing_units.items()}
            waiting: dict[Unit, list[str]] = defaultdict(list)
            for h, units in missing_units.items():
                for u in set(units):
                    waiting[u].append(h)
            unit_scores: dict[Unit, TokenScore] = {}

            def finish_generation(
                jobs_batch: list[tuple[str, GenerationJob]], texts: Sequence[Sequence[str]]
            ) -> None:
                done: dict[str, Response] = {}
                for (h, job), out in zip(jobs_batch, texts, strict=True):
                    if len(out) != job.n:
                        raise RuntimeError(f"backend returned {len(out)} samples, asked {job.n}")
                    done[h] = GenerateResult(texts=tuple(out))
                self._store(done, keys, responses)
                advance(len(jobs_batch))

            one_pass = isinstance(self.backend, OnePassBackend)
            if one_pass:
                # Scoring and generation reach the backend together, one wave at a time.
                waves = max(len(batches), len(gen_batches))
                batches += [[] for _ in range(waves - len(batches))]
                gen_batches += [[] for _ in range(waves - len(gen_batches))]
            for wave, batch in enumerate(batches):
                if isinstance(self.backend, OnePassBackend):
                    jobs_now = gen_batches[wave]
                    results, texts_now = self.backend.score_and_generate(
                        batch, [j for _, j in jobs_now]
                    )
                    # Stored with the wave's scores, so a killed run keeps them too.
                    finish_generation(jobs_now, texts_now)
                else:
                    results = self.backend.score(batch)
                done: dict[str, Response] = {}
                for group, scores in zip(batch, results, strict=True):
                    scored_tokens += group.packed_length
                    for cont, score in zip(group.continuations, scores, strict=True):
                        unit = (group.context, cont)
                        _check_score(score, unit)
                        unit_scores[unit] = score
                        for h in waiting.pop(unit, []):
                            pending[h] -= 1
                            if pending[h] == 0:
                                done[h] = _assemble(unique[h], missing_units[h], unit_scores)
                    advance(len(group.continuations))
                self._store(done, keys, responses)
            if not one_pass:
                for jobs_batch in gen_batches:
                    finish_generation(jobs_batch, self.backend.generate([j for _, j in jobs_batch]))

        missing = [h for h in unique if h not in responses and h not in plan.skipped]
        if missing:  # pragma: no cover - would be an engine bug
            raise RuntimeError(f"{len(missing)} requests were planned but never answered")
        stats = EngineStats(
            requests=len(requests),
            unique=len(unique),
            reused=reused,
            computed=len(unique) - reused - len(plan.skipped),
            truncated=len(plan.truncated),
            scored_tokens=scored_tokens,
            generated_jobs=len(missing_jobs),
            skipped=len(plan.skipped),
        )
        return EngineResult(
            responses=responses,
            truncated=frozenset(plan.truncated),
            stats=stats,
            skipped=frozenset(plan.skipped),
        )

    def _store(
        self, done: dict[str, Response], keys: dict[str, str], responses: dict[str, Response]
    ) -> None:
        responses.update(done)
        if self.cache is not None and done:
            self.cache.put_many({keys[h]: r for h, r in done.items()})

    def _groups(self, units_of: dict[str, list[Unit]]) -> list[ScoringGroup]:
        by_context: dict[tuple[int, ...], set[tuple[int, ...]]] = defaultdict(set)
        for units in units_of.values():
            for ctx, cont in units:
                by_context[ctx].add(cont)
        # No packed row longer than the model's window (absolute positions, length-dependent
        # RoPE and a model's own buffers are only defined up to it).
        budget = min(self.backend.token_budget, self.backend.max_length)
        groups: list[ScoringGroup] = []
        for ctx, conts in by_context.items():
            # Longest continuations first; split a context's continuations into several groups
            # when packing all of them would not fit one batch or the window.
            chunk: list[tuple[int, ...]] = []
            length = len(ctx)
            for cont in sorted(conts, key=lambda c: (-len(c), c)):
                if chunk and length + len(cont) - 1 > budget:
                    groups.append(ScoringGroup(ctx, tuple(chunk)))
                    chunk, length = [], len(ctx)
                chunk.append(cont)
                length += len(cont) - 1
            groups.append(ScoringGroup(ctx, tuple(chunk)))
        groups.sort(key=lambda g: (-g.packed_length, g.context))
        return groups

    def _scoring_batches(self, groups: list[ScoringGroup]) -> list[list[ScoringGroup]]:
        budget = self.backend.token_budget
        batches: list[list[ScoringGroup]] = []
        current: list[ScoringGroup] = []
        for g in groups:  # sorted longest first: the first of a batch sets its padded length
            if current and (len(current) + 1) * current[0].packed_length > budget:
                batches.append(current)
                current = []
            current.append(g)
        if current:
            batches.append(current)
        return batches

    def _generation_batches(
        self, jobs: dict[str, GenerationJob]
    ) -> list[list[tuple[str, GenerationJob]]]:
        budget = self.backend.token_budget
        ordered = sorted(jobs.items(), key=lambda kv: (-len(kv[1].prompt), kv[0]))
        batches: list[list[tuple[str, GenerationJob]]] = []
        current: list[tuple[str, GenerationJob]] = []
        width = 0
        for h, job in ordered:
            need = (len(job.prompt) + job.max_tokens) * job.n
            if current and (len(current) + 1) * max(width, need) > budget:
                batches.append(current)
                current, width = [], 0
            current.append((h, job))
            width = max(width, need)
        if current:
            batches.append(current)
        return batches


def _check_score(score: TokenScore, unit: Unit) -> None:
    if score.logprob != score.logprob or score.logprob == float("inf"):
        raise DamagedModelError(
            f"the model returned a NaN/inf log-likelihood for a {len(unit[1])}-token continuation "
            f"after a {len(unit[0])}-token context: a damaged checkpoint, or overflow in this "
            "dtype (try --dtype float32)"
        )


def _assemble(request: Request, units: list[Unit], scores: dict[Unit, TokenScore]) -> Response:
    if isinstance(request, Loglikelihood):
        s = scores[units[0]]
        return LoglikelihoodResult(logprob=s.logprob, n_tokens=s.n_tokens, is_greedy=s.is_greedy)
    if isinstance(request, TokenLogprobs):
        s = scores[units[0]]
        if len(s.token_logprobs) != s.n_tokens or len(s.token_greedy) != s.n_tokens:
            raise RuntimeError("the backend returned no per-token scores")
        return TokenLogprobsResult(logprobs=s.token_logprobs, greedy=s.token_greedy)
    total = 0.0
    n = 0
    for u in units:  # rolling windows, summed in order like lm-eval
        total += scores[u].logprob
        n += scores[u].n_tokens
    return RollingResult(logprob=total, n_tokens=n)


class _ProgressContext:
    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total > 0
        self.total = total
        self._progress: object | None = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        progress.start()
        task = progress.add_task("scoring", total=self.total)
        self._progress = progress
        return lambda n: progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()  # type: ignore[attr-defined]


def _progress(enabled: bool, total: int) -> _ProgressContext:
    return _ProgressContext(enabled, total)
