"""A parity guard in every run: the fast path checked against the model's plain forward.

The first scoring batches of a run (its own requests) are scored the fast way (packed tree
masks, prefix reuse, padding, batching) and then, for a small fixed sample of their groups,
again through the model's plain unpacked forward: one sequence per (context, continuation), no
packing, no position ids, the model's own masks (a group's continuations share one
right-padded batch, which leaves every real position of a causal model untouched). The largest difference goes into the manifest; over the
tolerance the run stops with one line (exit 2) before that batch is stored.

Tolerances: fp32, 1e-4 nats per continuation (packed and plain differ only in reduction order,
~1e-6 per token on the test matrix), widened by 1e-6 per token past 100 tokens: a 512-token
rolling window sums 512 such roundings (6.8e-5 measured on tiny-base). In bf16/fp16 the two computations round differently at every layer,
so the comparison is per token: 0.25 nats (bf16: 8 significant bits) and 0.05 nats (fp16: 11);
the mask and position errors the guard exists for move single tokens by whole nats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evalkit.backends.base import ScoringGroup, TokenScore
from evalkit.errors import EvalkitError

# Groups checked per run: spread over the first batch, topped up from the next ones.
SAMPLE_GROUPS = 8
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.25, "float16": 0.05}
PER_TOKEN = {"float32": False, "bfloat16": True, "float16": True}

# A group -> per continuation, its per-token log-probs by the plain forward.
Reference = Callable[[ScoringGroup], Sequence[Sequence[float]]]


def plain_rows(
    sequences: Sequence[Sequence[int]],
) -> tuple[list[tuple[int, ...]], list[int]]:
    """The fewest plain rows whose forwards score every sequence, and each sequence's row.

    In a causal model the hidden state at a position depends only on the tokens up to it, so a
    sequence that is a prefix of another needs no row of its own: its positions are the longer
    row's first positions (the argument right padding already rests on). A multiple-choice
    group with one-token choices (" A", " B", ...) becomes one row, the context, instead of one
    per choice: the guard's reference cost divided by the number of choices, same numbers.
    """
    rows: list[tuple[int, ...]] = []
    host = [0] * len(sequences)
    for i in sorted(range(len(sequences)), key=lambda i: -len(sequences[i])):
        seq = tuple(sequences[i])
        for r, row in enumerate(rows):
            if row[: len(seq)] == seq:
                host[i] = r
                break
        else:
            host[i] = len(rows)
            rows.append(seq)
    return rows, host


def sample(groups: Sequence[ScoringGroup], k: int) -> list[int]:
    """`k` indices spread evenly over `groups` (first and last included), deterministic."""
    n = len(groups)
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


@dataclass(frozen=True)
class GuardReport:
    status: str  # "passed", "failed", "off (--no-guard)", "not run (nothing was scored)"
    architecture: str
    path: str
    dtype: str
    groups: int
    continuations: int
    max_abs_diff: float | None
    tolerance: float
    per: str  # "continuation" or "token"
    reference: str
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "architecture": self.architecture,
            "path": self.path,
            "dtype": self.dtype,
            "groups": self.groups,
            "continuations": self.continuations,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "per": self.per,
            "reference": self.reference,
            "seconds": round(self.seconds, 3),
        }


class ParityGuard:
    def __init__(
        self,
        *,
        enabled: bool,
        dtype: str,
        architecture: str,
        path: str,
        reference: Reference,
        reference_name: str,
        tolerance: float | None = None,
        per_token: bool | None = None,
    ) -> None:
        self.enabled = enabled
        self.dtype = dtype
        self.architecture = architecture
        self.path = path
        self._reference = reference
        self._reference_name = reference_name
        # A caller comparing two different implementations (vllm_guard.py) sets its own.
        self.tolerance = tolerance if tolerance is not None else TOLERANCE.get(dtype, 0.25)
        self.per_token = per_token if per_token is not None else PER_TOKEN.get(dtype, True)
        self._groups = 0
        self._continuations = 0
        self._worst: float | None = None
        self._seconds = 0.0

    @property
    def done(self) -> bool:
        return not self.enabled or self._groups >= SAMPLE_GROUPS

    def check(
        self, groups: Sequence[ScoringGroup], results: Sequence[tuple[TokenScore, ...]]
    ) -> None:
        """Compare a fast batch's sample with the plain forward; raise over tolerance."""
        if self.done:
            return
        started = time.perf_counter()
        try:
            self._check(groups, results)
        finally:
            self._seconds += time.perf_counter() - started

    def allowed(self, n_tokens: int) -> float:
        if self.per_token:
            return self.tolerance
        return self.tolerance + 1e-6 * max(0, n_tokens - 100)

    def _check(
        self, groups: Sequence[ScoringGroup], results: Sequence[tuple[TokenScore, ...]]
    ) -> None:
        want = SAMPLE_GROUPS - self._groups
        for i in sample(groups, want):
            g = groups[i]
            plains = self._reference(g)
            for cont, fast, plain in zip(g.continuations, results[i], plains, strict=True):
                if self.per_token:
                    diff = max(abs(a - b) for a, b in zip(fast.token_logprobs, plain, strict=True))
                else:
                    diff = abs(fast.logprob - sum(plain))
                diff = diff if diff == diff else float("inf")  # NaN counts as failing
                self._worst = diff if self._worst is None else max(self._worst, diff)
                self._continuations += 1
                if diff > self.allowed(len(cont)):
                    raise EvalkitError(
                        f"parity guard: {self.architecture} on the {self.path} path differs "
                        f"from the model's plain forward by {diff:.3g} nats per {self._per} "
                        f"(tolerance {self.allowed(len(cont)):g} in {self.dtype}) on a "
                        f"{len(cont)}-token continuation after a {len(g.context)}-token "
                        "context; nothing was stored (report it; --no-guard skips this check)"
                    )
            self._groups += 1

    @property
    def _per(self) -> str:
        return "token" if self.per_token else "continuation"

    def report(self) -> GuardReport:
        if not self.enabled:
            status = "off (--no-guard)"
        elif self._groups == 0:
            status = "not run (nothing was scored: every request came from the cache)"
        else:
            status = "passed"
        return GuardReport(
            status=status,
            architecture=self.architecture,
            path=self.path,
            dtype=self.dtype,
            groups=self._groups,
            continuations=self._continuations,
            max_abs_diff=self._worst,
            tolerance=self.tolerance,
            per=self._per,
            reference=self._reference_name,
            seconds=self._seconds,
        )
