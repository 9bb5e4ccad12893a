"""Label probes: demonstrations with manipulated labels, scored against the true labels
(Min et al. 2022; Wei et al. 2023), and the label sensitivity summary (docs/transfer.md)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from evalkit.requests import Response
from evalkit.tasks.base import Item, ItemResult, TagValue, TokenizerInfo
from evalkit.tasks.probes.common import Bucket, ProbeSpec, Summary, group_mean
from evalkit.tasks.probes.mc import MCProbe, by_tag


class LabelProbeTask(MCProbe):
    """Demonstrations with manipulated labels, scored against the true labels.

    `mode: labels` (Min et al. 2022): conditions `zero_shot` (k = 0), `gold`, `random` (each
    demonstration's label uniform over the label set) and `pct_X` for X in `pcts` (exactly
    k*X/100 demonstrations, a uniformly drawn subset, keep the gold label; each other one gets
    a wrong label drawn uniformly). `mode: flip` (Wei et al. 2023): `flip_P` for P in `pcts`,
    exactly k*P/100 demonstrations (a uniformly drawn subset) get the flipped label, index
    (gold + 1) mod L (the other label when L = 2). The same demonstration inputs serve every
    condition of a (test document, seed)."""

    keys = frozenset(
        {"docs", "prompt", "choices", "gold", "target_delimiter", "separator", "tags", "seeds",
         "n_test", "k", "mode", "pcts", "min_gain"}
    )  # fmt: skip
    required = frozenset({"docs", "prompt", "mode"})

    def __init__(self, spec: ProbeSpec) -> None:
        super().__init__(spec)
        self.k = int(self._p("k", 8))
        # label_sensitivity divides by acc[gold] - acc[zero_shot]; below this gain the ratio is
        # noise over a near-zero number (it read -20 on the label control), so it is undefined.
        self.min_gain = float(self._p("min_gain", MIN_GAIN))
        if not 0 < self.min_gain <= 1:
            raise self._fail("'min_gain' must be in (0, 1]")
        self.undefined: dict[str, str] = {}  # set by `score()`: summaries with no value, why
        self.mode = str(self._p("mode"))
        if self.mode not in ("labels", "flip"):
            raise self._fail("'mode' must be 'labels' or 'flip'")
        default = (0, 50) if self.mode == "labels" else (0, 25, 50, 75, 100)
        self.pcts = tuple(int(p) for p in self._p("pcts", default))
        for p in self.pcts:
            if not 0 <= p <= 100 or (self.k * p) % 100:
                raise self._fail(f"k * {p} / 100 must be a whole number of demonstrations")
        if self.mode == "flip" and not {0, 100} <= set(self.pcts):
            raise self._fail("flip mode needs pcts 0 and 100 (its summary is acc(0) - acc(100))")
        if self.k < 1:
            raise self._fail("'k' must be >= 1")

    def conditions(self) -> list[str]:
        if self.mode == "flip":
            return [f"flip_{p}" for p in self.pcts]
        return ["zero_shot", "gold", "random", *(f"pct_{p}" for p in self.pcts)]

    def _labels(self, rng: random.Random, golds: list[int], n_labels: int, cond: str) -> list[int]:
        k = len(golds)
        if cond == "gold":
            return list(golds)
        if cond == "random":
            return [rng.randrange(n_labels) for _ in golds]
        pct = int(cond.split("_")[1])
        chosen = set(rng.sample(range(k), k * pct // 100))
        if cond.startswith("flip_"):
            return [(g + 1) % n_labels if j in chosen else g for j, g in enumerate(golds)]
        # pct_X: the chosen subset keeps gold, the others get a uniformly drawn wrong label.
        return [
            g if j in chosen else rng.choice([x for x in range(n_labels) if x != g])
            for j, g in enumerate(golds)
        ]

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        tests, pool = self._split(limit, self.k)
        out: list[Item] = []
        for i in tests:
            for seed in self.seeds:
                demo_ids = random.Random(f"{seed}:{i}").sample(pool, self.k)
                golds = []
                n_labels = 0
                for j in demo_ids:
                    choices, gold = self.r.choices(
                        self.docs()[j], self.choices_key, self.gold_key, j
                    )
                    golds.append(gold)
                    n_labels = len(choices)
                for cond in self.conditions():
                    if cond == "zero_shot":
                        if seed != self.seeds[0]:
                            continue
                        demos: list[str] = []
                        k = 0
                    else:
                        rng = random.Random(f"{seed}:{i}:{cond}")
                        labels = self._labels(rng, golds, n_labels, cond)
                        demos = [
                            self._shot(j, lab) for j, lab in zip(demo_ids, labels, strict=True)
                        ]
                        k = self.k
                    tags: list[tuple[str, TagValue]] = [
                        ("condition", cond),
                        ("k", k),
                        ("seed", seed),
                    ]
                    out.append(self._mc_item(len(out), i, demos, tags))
        return out

    @property
    def summaries(self) -> tuple[Summary, ...]:
        out = [
            Summary(
                f"acc[{c}]",
                by_tag("acc", "condition", c),
                bucket=Bucket("acc", (("condition", c),)),
            )
            for c in self.conditions()
        ]
        if self.mode == "labels":
            out.append(Summary("label_sensitivity", _label_sensitivity(self.min_gain)))
        else:
            out.append(Summary("flip_delta", _flip_delta))
        return tuple(out)

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        results = super().score(items, responses)
        self.undefined = {}
        if self.mode == "labels":
            why = sensitivity_undefined(results, self.min_gain)
            if why is not None:
                self.undefined["label_sensitivity"] = why
        return results

    @property
    def manifest_notes(self) -> dict[str, Any]:
        """A summary this run has no value for, with why (`undefined_summaries`)."""
        return {"undefined_summaries": dict(self.undefined)} if self.undefined else {}


MIN_GAIN = 0.1  # label_sensitivity's least acc[gold] - acc[zero_shot] (YAML `min_gain`)


def label_sensitivity(results: Sequence[ItemResult], min_gain: float = MIN_GAIN) -> float:
    """(acc_gold - acc_random) / (acc_gold - acc_zero_shot): the share of what gold
    demonstrations add over zero-shot that is lost with random labels. NaN (no score row;
    `sensitivity_undefined` says why) unless gold beats zero-shot by at least `min_gain`:
    over a gain near 0 or below it, the ratio is meaningless (and can take any sign)."""
    gold = group_mean(results, "acc", "condition", "gold")
    rand = group_mean(results, "acc", "condition", "random")
    zero = group_mean(results, "acc", "condition", "zero_shot")
    denom = gold - zero
    return (gold - rand) / denom if denom >= min_gain else float("nan")


def sensitivity_undefined(results: Sequence[ItemResult], min_gain: float = MIN_GAIN) -> str | None:
    """Why `label_sensitivity` has no value on these results, or None when it has one."""
    gold = group_mean(results, "acc", "condition", "gold")
    zero = group_mean(results, "acc", "condition", "zero_shot")
    if math.isnan(gold) or math.isnan(zero):
        return "no gold or no zero-shot items"
    if gold - zero >= min_gain:
        return None
    return (
        f"acc[gold] - acc[zero_shot] = {gold:.3f} - {zero:.3f} = {gold - zero:+.3f} is below "
        f"min_gain {min_gain:g}: gold demonstrations add (almost) nothing over zero-shot, so "
        "the share of that gain lost with random labels is undefined; compare acc[gold] with "
        "acc[random] instead"
    )


def _label_sensitivity(min_gain: float) -> Any:
    def compute(results: Sequence[ItemResult]) -> float:
        return label_sensitivity(results, min_gain)

    return compute


def _flip_delta(results: Sequence[ItemResult]) -> float:
    """acc with 0% flipped labels minus acc with 100% flipped labels."""
    return group_mean(results, "acc", "condition", "flip_0") - group_mean(
        results, "acc", "condition", "flip_100"
    )
