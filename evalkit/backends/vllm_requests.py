"""Evalkit's scoring groups and generation jobs as vLLM requests, and the results read back.

Each request is (prompt token ids, SamplingParams, handler); the handler writes what the
finished request answers into a table of per-token (log-prob, greedy) slots, so requests can
go to the engine in any order (the backend sorts them by prompt for the prefix cache):

- one-token continuations (multiple choice): one request per context with `max_tokens=1` and
  the choice tokens' exact log-probs (`logprob_token_ids`); older versions: top-k `logprobs`,
  and a choice outside the top k is retried through prompt log-probs;
- longer continuations (up to `trace_max_tokens`): forced decoding after the context
  (`trace_decode_token_ids`) where the engine replays traces; otherwise prompt log-probs of
  context + continuation but its last token, the last token's log-prob coming from the one
  generated position;
- generation: `n` samples cut at the stop sequences as lm-eval cuts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.backends.base import GenerationJob, ScoringGroup, TokenScore
from evalkit.backends.hf_generate import cut_at_stop
from evalkit.backends.vllm_options import MAX_CHOICE_IDS, VLLMFeatures


def lp_and_rank(position: Any, token: int) -> tuple[float, int | None]:
    """(log-prob, rank) of `token` in one position's {token id: Logprob} mapping."""
    if not position or token not in position:
        raise KeyError(token)
    entry = position[token]
    return float(entry.logprob), entry.rank


# What a finished request's output is turned into, by the request that asked for it.
Handler = Callable[[Any], None]
# One engine request: prompt token ids, SamplingParams, and what reads its output.
Request = tuple[tuple[int, ...], Any, Handler]
# (group, continuation) -> per-token (log-prob, greedy), None until a request answers it.
Found = dict[tuple[int, int], list[tuple[float, bool] | None]]


def empty_found(groups: Sequence[ScoringGroup]) -> Found:
    """A slot per token of every continuation, to be filled by the handlers."""
    return {
        (gi, ci): [None] * len(cont)
        for gi, g in enumerate(groups)
        for ci, cont in enumerate(g.continuations)
    }


def collect_scores(groups: Sequence[ScoringGroup], found: Found) -> list[tuple[TokenScore, ...]]:
    """Each continuation's summed log-prob and greedy flag; a slot left empty is an error."""
    scores: list[tuple[TokenScore, ...]] = []
    for gi, g in enumerate(groups):
        row = []
        for ci, cont in enumerate(g.continuations):
            steps = found[(gi, ci)]
            if any(s is None for s in steps):
                raise RuntimeError(f"vLLM returned no log-prob for a {len(cont)}-token answer")
            lps = tuple(s[0] for s in steps if s is not None)
            hits = tuple(s[1] for s in steps if s is not None)
            row.append(
                TokenScore(
                    logprob=math.fsum(lps),
                    n_tokens=len(cont),
                    is_greedy=all(hits),
                    token_logprobs=lps,
                    token_greedy=hits,
                )
            )
        scores.append(tuple(row))
    return scores


@dataclass(frozen=True)
class RequestBuilder:
    """What turning groups and jobs into requests depends on, fixed once the engine is up."""

    params: Callable[..., Any]  # SamplingParams, a rejection raised as a one-line error
    features: VLLMFeatures
    max_logprobs: int  # the engine's cap on log-probs per request
    top_k_logprobs: int
    trace_max_tokens: int
    forced_decoding: bool

    def scoring_requests(
        self,
        gi: int,
        g: ScoringGroup,
        found: Found,
        retry: list[tuple[int, int]],
    ) -> list[Request]:
        out: list[Request] = []
        single = [ci for ci, c in enumerate(g.continuations) if len(c) == 1]
        multi = [ci for ci, c in enumerate(g.continuations) if len(c) > 1]
        if single:
            choices = sorted({g.continuations[ci][0] for ci in single})
            owners = {t: [ci for ci in single if g.continuations[ci][0] == t] for t in choices}
            if self.features.logprob_token_ids:
                # Some versions count the ids against `max_logprobs` too: stay under both.
                per = min(MAX_CHOICE_IDS, self.max_logprobs)
                for start in range(0, len(choices), per):
                    chunk = choices[start : start + per]
                    params = self.params(
                        max_tokens=1,
                        temperature=0.0,
                        logprob_token_ids=chunk,
                        detokenize=False,
                    )
                    out.append((g.context, params, self._choices_handler(gi, chunk, owners, found)))
            else:
                params = self.params(
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=self.top_k_logprobs,
                    detokenize=False,
                )
                out.append(
                    (g.context, params, self._topk_handler(gi, choices, owners, found, retry))
                )
        for ci in multi:
            cont = g.continuations[ci]
            if self.forced_decoding and len(cont) <= self.trace_max_tokens:
                params = self.params(
                    max_tokens=len(cont),
                    temperature=0.0,
                    trace_decode_token_ids=list(cont),
                    logprobs=0,
                    ignore_eos=True,
                    detokenize=False,
                )
                out.append((g.context, params, self._trace_handler(gi, ci, cont, found)))
            else:
                out.append(self.prompt_request(gi, ci, g.context, cont, found))
        return out

    def prompt_request(
        self,
        gi: int,
        ci: int,
        context: tuple[int, ...],
        cont: tuple[int, ...],
        found: Found,
    ) -> Request:
        kwargs: dict[str, Any] = {
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
            "detokenize": False,
        }
        if self.features.flat_logprobs:
            kwargs["flat_logprobs"] = True
        if self.features.skip_reading_prefix_cache:
            # Never read cached prompt blocks for prompt log-probs (vLLM #42019).
            kwargs["skip_reading_prefix_cache"] = True
        # With `logprob_token_ids` the last continuation token is scored at the generated
        # position, so the prompt is exactly what the HF backend feeds (a full-window item fits).
        split = self.features.logprob_token_ids
        if split:
            kwargs["logprob_token_ids"] = [cont[-1]]
        in_prompt = cont[:-1] if split else cont
        n_ctx = len(context)

        def handle(out: Any) -> None:
            plps = out.prompt_logprobs
            if plps is None:
                raise RuntimeError("vLLM returned no prompt log-probs")
            # prompt_logprobs[0] holds nothing (nothing predicts the first prompt token); entry
            # i holds the distribution that predicted prompt token i.
            steps = found[(gi, ci)]
            for j, tok in enumerate(in_prompt):
                lp, rank = lp_and_rank(plps[n_ctx + j], tok)
                steps[j] = (lp, rank == 1)
            if split:
                done = out.outputs[0]
                lp, _ = lp_and_rank(
                    done.logprobs[0], cont[-1]
                )  # ranks of requested ids are list order
                steps[len(cont) - 1] = (lp, done.token_ids[0] == cont[-1])

        return (context + in_prompt, self.params(**kwargs), handle)

    def _choices_handler(
        self,
        gi: int,
        chunk: list[int],
        owners: dict[int, list[int]],
        found: Found,
    ) -> Handler:
        def handle(out: Any) -> None:
            completion = out.outputs[0]
            position = completion.logprobs[0]
            best = completion.token_ids[0]  # greedy: the argmax
            for tok in chunk:
                lp, _ = lp_and_rank(position, tok)
                for ci in owners[tok]:
                    found[(gi, ci)][0] = (lp, tok == best)

        return handle

    def _topk_handler(
        self,
        gi: int,
        choices: list[int],
        owners: dict[int, list[int]],
        found: Found,
        retry: list[tuple[int, int]],
    ) -> Handler:
        def handle(out: Any) -> None:
            completion = out.outputs[0]
            position = completion.logprobs[0]
            best = completion.token_ids[0]
            for tok in choices:
                if position and tok in position:
                    lp = float(position[tok].logprob)
                    for ci in owners[tok]:
                        found[(gi, ci)][0] = (lp, tok == best)
                else:
                    retry.extend((gi, ci) for ci in owners[tok])

        return handle

    def _trace_handler(
        self,
        gi: int,
        ci: int,
        cont: tuple[int, ...],
        found: Found,
    ) -> Handler:
        def handle(out: Any) -> None:
            completion = out.outputs[0]
            if list(completion.token_ids) != list(cont):
                raise RuntimeError("vLLM did not replay the forced continuation tokens")
            steps = found[(gi, ci)]
            for j, tok in enumerate(cont):
                lp, rank = lp_and_rank(completion.logprobs[j], tok)
                steps[j] = (lp, rank == 1)

        return handle

    def generation_request(
        self, ji: int, job: GenerationJob, texts: list[tuple[str, ...] | None]
    ) -> Request:
        kwargs: dict[str, Any] = {
            "n": job.n,
            "temperature": job.temperature,
            "max_tokens": job.max_tokens,
        }
        stops = [s for s in job.stop if s]
        if stops:
            kwargs["stop"] = stops
        if job.temperature > 0:
            kwargs["seed"] = job.seed

        def handle(out: Any) -> None:
            done = sorted(out.outputs, key=lambda c: c.index)
            if len(done) != job.n:
                raise RuntimeError(f"vLLM returned {len(done)} samples, asked {job.n}")
            texts[ji] = tuple(cut_at_stop(c.text, job.stop) for c in done)

        return (job.prompt, self.params(**kwargs), handle)
