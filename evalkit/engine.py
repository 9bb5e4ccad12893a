"""Between requests and a backend: deduplicate, plan (encoding.py), reuse the cache, batch
(batching.py), run the batches, assemble responses, show progress.

Each distinct request is planned once into token units (or a generation job); units that share
a context are scored in one pass over it. Results are cached per request after every batch, so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from evalkit.backends.base import Backend, FeedLimited, GenerationJob, OnePassBackend, TokenScore
from evalkit.batching import generation_batches, scoring_batches, scoring_groups
from evalkit.cache import ResultCache, cache_key
from evalkit.encoding import Encoder, Plan, Truncation, Unit, plan_requests
from evalkit.errors import DamagedModelError
from evalkit.requests import (
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    Response,
    RollingResult,
    TokenLogprobs,
    TokenLogprobsResult,
)


@dataclass(frozen=True)
class EngineOptions:
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
        self._encoder = Encoder(backend.tokenizer)

    # -- keys ---------------------------------------------------------------------------
    def _key(self, request_hash: str, truncated: bool) -> str:
        settings = dict(self.backend.settings)
        if truncated:
            settings["truncation"] = "left"
        return cache_key(self.backend.model_fingerprint, settings, request_hash)

    def _plan(self, requests: Mapping[str, Request]) -> Plan:
        feed_limit = self.backend.feed_limit if isinstance(self.backend, FeedLimited) else None
        window, truncation = self.backend.max_length, self.options.truncation
        return plan_requests(requests, self._encoder, window, truncation, feed_limit)

    def units(self, requests: Sequence[Request]) -> Mapping[str, tuple[Unit, ...]]:
        """The token units each scoring request is planned into (request hash -> units), as
        `run` would score them; generation requests have none."""
        return self._plan({r.hash: r for r in requests}).units_of

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

        budget = self.backend.token_budget
        groups = scoring_groups(missing_units, budget, self.backend.max_length)
        batches = scoring_batches(groups, budget)
        gen_batches = generation_batches(missing_jobs, budget)
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


def _check_score(score: TokenScore, unit: Unit) -> None:
    if score.logprob != score.logprob or score.logprob == float("inf"):
        raise DamagedModelError(
            f"the model returned a NaN/inf log-likelihood for a {len(unit[1])}-token continuation "
            f"after a {len(unit[0])}-token context: a damaged checkpoint, or overflow in this "
            "dtype (try --dtype float32)"
        )


def _assemble(request: Request, units: Sequence[Unit], scores: dict[Unit, TokenScore]) -> Response:
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
