"""Request and response values: the contract between tasks, the engine and the backends.

Requests are frozen and hashable and carry a stable content hash (sha256 over a canonical
JSON form), so the engine can deduplicate them across tasks and cache their results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal


def _content_hash(kind: str, payload: dict[str, object]) -> str:
    blob = json.dumps({"kind": kind, **payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Loglikelihood:
    """log P(continuation | context). Multiple choice is a group of these sharing a context."""

    context: str
    continuation: str
    kind: Literal["loglikelihood"] = "loglikelihood"

    @property
    def hash(self) -> str:
        return _content_hash(
            self.kind, {"context": self.context, "continuation": self.continuation}
        )


@dataclass(frozen=True)
class RollingLoglikelihood:
    """log P(text) of a whole text, for perplexity and bits-per-byte."""

    text: str
    kind: Literal["rolling"] = "rolling"

    @property
    def hash(self) -> str:
        return _content_hash(self.kind, {"text": self.text})


@dataclass(frozen=True)
class Generate:
    """Sample `n` continuations of `prompt`, each cut at the first stop sequence."""

    prompt: str
    stop: tuple[str, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    n: int = 1
    seed: int = 0
    kind: Literal["generate"] = "generate"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"Generate.max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"Generate.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"Generate.temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("Generate with temperature 0 is greedy: n > 1 would repeat one sample")

    @property
    def hash(self) -> str:
        return _content_hash(
            self.kind,
            {
                "prompt": self.prompt,
                "stop": list(self.stop),
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "n": self.n,
                "seed": self.seed,
            },
        )


@dataclass(frozen=True)
class TokenLogprobs:
    """Per-token log-probs (and greedy hits) of a whole sequence, each token given all before it.

    Exactly one of `text` (tokenized by the engine and conditioned on the prefix token, like an
    empty-context loglikelihood) or `tokens` (ids used as given; the first one only conditions)
    is set. Probes such as induction copying need token-level values, not sums.
    """

    text: str | None = None
    tokens: tuple[int, ...] | None = None
    kind: Literal["token_logprobs"] = "token_logprobs"

    def __post_init__(self) -> None:
        if (self.text is None) == (self.tokens is None):
            raise ValueError("TokenLogprobs needs exactly one of text or tokens")
        if self.tokens is not None and len(self.tokens) < 2:
            raise ValueError("TokenLogprobs needs at least two tokens (one conditions)")
        if self.text is not None and not self.text:
            raise ValueError("TokenLogprobs needs a non-empty text")

    @property
    def hash(self) -> str:
        payload: dict[str, object] = (
            {"text": self.text} if self.text is not None else {"tokens": list(self.tokens or ())}
        )
        return _content_hash(self.kind, payload)


Request = Loglikelihood | RollingLoglikelihood | Generate | TokenLogprobs


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Summed log-prob of the continuation's tokens, their count, and whether greedy decoding
    would have produced exactly them."""

    logprob: float
    n_tokens: int
    is_greedy: bool


@dataclass(frozen=True)
class RollingResult:
    logprob: float
    n_tokens: int


@dataclass(frozen=True)
class GenerateResult:
    texts: tuple[str, ...]


@dataclass(frozen=True)
class TokenLogprobsResult:
    """One log-prob and one greedy flag per predicted token (every token but the conditioning
    first one, or every text token after the prefix)."""

    logprobs: tuple[float, ...]
    greedy: tuple[bool, ...]


Response = LoglikelihoodResult | RollingResult | GenerateResult | TokenLogprobsResult
