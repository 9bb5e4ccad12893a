"""The seam between the engine and a model: token-level work in, numbers out, same order.

The engine tokenizes (once) with the backend's tokenizer, groups continuations that share a
context, and batches; a backend only runs what it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ScoringGroup:
    """Continuations scored after one shared context, in one pass over the context.

    `context` is non-empty (an empty text context becomes the prefix token, as lm-eval does);
    every continuation is non-empty. Log-probs are of each continuation's tokens given the
    context and the continuation's own earlier tokens.
    """

    context: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]

    @property
    def packed_length(self) -> int:
        """Tokens fed to the model when the group is packed: the context once, then every
        continuation but its last token (which is only predicted, never attended to)."""
        return len(self.context) + sum(len(c) - 1 for c in self.continuations)

    @property
    def longest_branch(self) -> int:
        """Longest position a branch reaches: what must fit the model's window."""
        return len(self.context) + max(len(c) for c in self.continuations) - 1


@dataclass(frozen=True)
class TokenScore:
    logprob: float
    n_tokens: int
    is_greedy: bool
    # The same, token by token (summing `token_logprobs` gives `logprob`).
    token_logprobs: tuple[float, ...] = ()
    token_greedy: tuple[bool, ...] = ()


@dataclass(frozen=True)
class GenerationJob:
    prompt: tuple[int, ...]
    stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    n: int
    seed: int


class Tokenizer(Protocol):
    """What the engine needs of a tokenizer, with lm-eval's conventions."""

    @property
    def prefix_token_id(self) -> int:
        """Stands in for an empty context (BOS, else EOS)."""
        ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        ...

    def encode(self, text: str) -> list[int]:
        """Encode with the tokenizer's default special-token handling (as lm-eval does)."""
        ...

    def encode_plain(self, text: str) -> list[int]:
        """Encode without any special tokens."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...


class Backend(Protocol):
    name: str

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def max_length(self) -> int:
        """The model's window in tokens."""
        ...

    @property
    def model_fingerprint(self) -> str:
        """Identity of the weights + config + tokenizer: part of every cache key."""
        ...

    @property
    def settings(self) -> Mapping[str, str]:
        """Everything besides the model that changes the numbers (dtype, device kind...)."""
        ...

    @property
    def token_budget(self) -> int:
        """Padded tokens one scoring batch may hold."""
        ...

    def score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        """One tuple of scores per group, one score per continuation, in order."""
        ...

    def generate(self, jobs: Sequence[GenerationJob]) -> list[tuple[str, ...]]:
        """`n` texts per job, each cut before the first stop sequence, in order."""
        ...


@runtime_checkable
class OnePassBackend(Protocol):
    """A backend that takes scoring and generation work in one call (vLLM: one engine pass)."""

    def score_and_generate(
        self, groups: Sequence[ScoringGroup], jobs: Sequence[GenerationJob]
    ) -> tuple[list[tuple[TokenScore, ...]], list[tuple[str, ...]]]: ...


@runtime_checkable
class FeedLimited(Protocol):
    """A backend that cannot feed every sequence the model's window allows (vLLM with a shorter
    `max_model_len`): the engine skips longer requests per item instead of changing items."""

    @property
    def feed_limit(self) -> int:
        """Longest token sequence (context + continuation but its last token) it can score."""
        ...
