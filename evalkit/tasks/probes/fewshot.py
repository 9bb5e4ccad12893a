"""The few-shot curve: one multiple-choice task at several k, its accuracy at each k and the
slope over log2(k + 1) (definitions in docs/transfer.md)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from evalkit.tasks.base import Item, ItemResult, TokenizerInfo
from evalkit.tasks.probes.common import (
    MC_METRICS,
    Bucket,
    ProbeSpec,
    Summary,
    group_mean,
    ols_slope,
)
from evalkit.tasks.probes.mc import MCProbe, by_tag

DEFAULT_KS: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32)


class FewShotCurveTask(MCProbe):
    """The same multiple-choice task at every k in `ks`, over `seeds` demonstration draws.

    For test document i and seed s, one permutation of the demonstration pool is drawn with
    `random.Random(f"{s}:{i}")`; k-shot uses its first k documents (so demonstrations are
    nested across k). The pool never holds a test document. k = 0 is the same for every seed
    and is built once (seed = the first seed). A prompt whose tokens (the model's tokenizer,
    + 1 for a BOS) with its longest choice exceed `max_context_tokens` (or the model's window,
    when shorter) is skipped and counted in the manifest's task notes (`skipped_items`,
    `{"k=K": count}`), never truncated."""

    keys = frozenset(
        {"docs", "prompt", "choices", "gold", "target_delimiter", "separator", "tags", "seeds",
         "n_test", "ks", "max_context_tokens", "curve_metric"}
    )  # fmt: skip
    required = frozenset({"docs", "prompt", "max_context_tokens"})

    def __init__(self, spec: ProbeSpec) -> None:
        super().__init__(spec)
        self.ks = tuple(int(k) for k in self._p("ks", DEFAULT_KS))
        if not self.ks or any(k < 0 for k in self.ks) or len(set(self.ks)) != len(self.ks):
            raise self._fail("'ks' must be distinct non-negative integers")
        self.max_tokens = int(self._p("max_context_tokens"))
        self.curve_metric = str(self._p("curve_metric", "acc"))
        if self.curve_metric not in {m.name for m in MC_METRICS}:
            raise self._fail(f"unknown curve_metric {self.curve_metric!r}")
        # Set by `items()`: what was skipped (and evaluated) for the model's tokenizer.
        self.skipped: dict[int, int] = {}
        self.present: set[int] = set()
        self.cap = self.max_tokens

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        tok = self._need_tokenizer(tokenizer)
        tests, pool = self._split(limit, max(self.ks))
        skipped = {k: 0 for k in self.ks}
        # A model with a shorter window runs the k that fit it rather than none.
        self.cap = min(self.max_tokens, getattr(tok, "max_context", None) or self.max_tokens)
        out: list[Item] = []
        for i in tests:
            choices, _ = self.r.choices(self.docs()[i], self.choices_key, self.gold_key, i)
            longest = max(choices, key=len)
            for seed in self.seeds:
                perm = random.Random(f"{seed}:{i}").sample(pool, max(self.ks))
                for k in self.ks:
                    if k == 0 and seed != self.seeds[0]:
                        continue
                    demos = [self._shot(j) for j in perm[:k]]
                    item = self._mc_item(len(out), i, demos, [("k", k), ("seed", seed)])
                    n_tokens = len(tok.encode_plain(item.prompt + self.delimiter + longest)) + 1
                    if n_tokens > self.cap:
                        skipped[k] += 1
                        continue
                    out.append(item)
        self.skipped = skipped
        self.present = {int(dict(it.tags)["k"]) for it in out}
        return out

    @property
    def summaries(self) -> tuple[Summary, ...]:
        m = self.curve_metric
        out = [
            Summary(f"{m}[k={k}]", by_tag(m, "k", k), bucket=Bucket(m, (("k", k),)))
            for k in self.ks
            if k in self.present
        ]
        out.append(Summary("slope_log2k" if m == "acc" else f"slope_log2k_{m}", _slope(m)))
        return tuple(out)

    @property
    def manifest_notes(self) -> dict[str, Any]:
        """Run facts, not scores: the prompt-length cap in force and the items left out at each
        k because their prompt did not fit it (a count per `k=K`)."""
        return {
            "max_context_tokens": self.cap,
            "skipped_items": {f"k={k}": n for k, n in self.skipped.items() if n},
        }


def _slope(metric: str) -> Any:
    def compute(results: Sequence[ItemResult]) -> float:
        ks = sorted({int(r.tags["k"]) for r in results})
        means = [group_mean(results, metric, "k", k) for k in ks]
        return ols_slope([math.log2(k + 1) for k in ks], means)

    return compute
