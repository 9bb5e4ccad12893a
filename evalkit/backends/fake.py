"""A deterministic backend for tests: byte tokens, scripted or hash-derived numbers."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evalkit.backends.base import GenerationJob, ScoringGroup, TokenScore

ScoreFn = Callable[[str, str], float]  # (context text, continuation text) -> log-prob
# (token ids so far, next token id) -> (log-prob of that token, whether it is the argmax)
TokenFn = Callable[[tuple[int, ...], int], tuple[float, bool]]
GenerateFn = Callable[[str, int], str]  # (prompt text, sample index) -> generated text

_SPECIALS = 3  # ids 0..2: bos, eos, pad; bytes follow


class ByteTokenizer:
    prefix_token_id = 0
    eos_token_id = 1
    pad_token_id = 2
    fingerprint = "fake-byte-tokenizer-v1"
    vocab_size = 256 + _SPECIALS

    def encode(self, text: str) -> list[int]:
        return [b + _SPECIALS for b in text.encode("utf-8")]

    def encode_plain(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i - _SPECIALS for i in ids if i >= _SPECIALS).decode("utf-8", "replace")


def _hashed_logprob(context: str, continuation: str) -> float:
    digest = hashlib.sha256(f"{context}\x00{continuation}".encode()).digest()
    # Roughly -1 nat per byte, with a deterministic wobble.
    return -len(continuation.encode()) * (0.5 + digest[0] / 255.0)


class FakeBackend:
    name = "fake"

    def __init__(
        self,
        score_fn: ScoreFn | None = None,
        generate_fn: GenerateFn | None = None,
        *,
        token_fn: TokenFn | None = None,
        max_length: int = 4096,
        token_budget: int = 8192,
        fingerprint: str = "fake-model-v1",
    ) -> None:
        self._score_fn = score_fn or _hashed_logprob
        self._generate_fn = generate_fn or (lambda prompt, i: "")
        self._token_fn = token_fn
        self._tokenizer = ByteTokenizer()
        self._max_length = max_length
        self._token_budget = token_budget
        self._fingerprint = fingerprint
        self.score_calls: list[int] = []  # groups per call, for tests of batching
        self.generate_calls: list[int] = []

    @property
    def tokenizer(self) -> ByteTokenizer:
        return self._tokenizer

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def model_fingerprint(self) -> str:
        return self._fingerprint

    @property
    def settings(self) -> Mapping[str, str]:
        return {"backend": "fake"}

    @property
    def token_budget(self) -> int:
        return self._token_budget

    def score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        self.score_calls.append(len(groups))
        tok = self._tokenizer
        out: list[tuple[TokenScore, ...]] = []
        for g in groups:
            ctx = tok.decode(g.context)
            scores = []
            for cont in g.continuations:
                if self._token_fn is not None:
                    steps = [self._token_fn(g.context + cont[:i], t) for i, t in enumerate(cont)]
                    lps = tuple(float(lp) for lp, _ in steps)
                    hits = tuple(bool(h) for _, h in steps)
                    total = math.fsum(lps)
                else:
                    # Spread the scripted total evenly over the tokens.
                    total = float(self._score_fn(ctx, tok.decode(cont)))
                    lps = tuple(total / len(cont) for _ in cont)
                    hits = tuple(total > -1e-9 for _ in cont)
                scores.append(
                    TokenScore(
                        logprob=total,
                        n_tokens=len(cont),
                        is_greedy=all(hits),
                        token_logprobs=lps,
                        token_greedy=hits,
                    )
                )
            out.append(tuple(scores))
        return out

    def generate(self, jobs: Sequence[GenerationJob]) -> list[tuple[str, ...]]:
        self.generate_calls.append(len(jobs))
        out = []
        for job in jobs:
            prompt = self._tokenizer.decode(job.prompt)
            texts = []
            for i in range(job.n):
                text = self._generate_fn(prompt, i)
                for s in job.stop:
                    if s:
                        text = text.split(s)[0]
                texts.append(text)
            out.append(tuple(texts))
        return out


_NEEDLE_RE = re.compile(r"The special magic number for ([\w-]+) is (\d+)\.")
_QUESTION_RE = re.compile(r"Question: What (?:is the special magic number|are all the special "
                          r"magic numbers) for (.+)\?\n")  # fmt: skip


class NeedleReader:
    """A scripted long-context model for needle-in-a-haystack tests (see
    evalkit.tasks.probes.haystack for the prompt format): it reads the question's keys and
    answers with the values of their needles, as long as the prompt's tokens (bytes here) plus
    `new_tokens` are at most `fail_beyond`; beyond that it answers nothing and gives the right
    values no more probability than any other. `fail_beyond=None`: a perfect reader."""

    def __init__(self, fail_beyond: int | None = None, new_tokens: int = 0) -> None:
        self.fail_beyond = fail_beyond
        self.new_tokens = new_tokens

    def _answers(self, prompt: str) -> list[str] | None:
        n = len(ByteTokenizer().encode(prompt)) + self.new_tokens
        if self.fail_beyond is not None and n > self.fail_beyond:
            return None
        q = _QUESTION_RE.findall(prompt)
        if not q:
            return None
        keys = re.split(r", | and ", q[-1])
        return [v for k, v in _NEEDLE_RE.findall(prompt) if k in keys]

    def generate(self, prompt: str, sample: int) -> str:
        answers = self._answers(prompt)
        return " " + ", ".join(answers) + "." if answers else " I do not know."

    def score(self, context: str, continuation: str) -> float:
        answers = self._answers(context) or []
        return -0.5 if continuation.strip() in answers else -20.0

    def backend(self, **kwargs: Any) -> FakeBackend:
        return FakeBackend(self.score, self.generate, **kwargs)
