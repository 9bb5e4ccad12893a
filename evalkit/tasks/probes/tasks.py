"""Probe tasks that the native YAML kinds cannot express (see docs/transfer.md for the exact
definitions): few-shot curves, label probes (Min et al. 2022; Wei et al. 2023), induction
copying and the in-context-learning score of Olsson et al. 2022.

Each is configured by a `kind: probe` YAML file and yields items tagged with everything a
summary needs (`k`, `seed`, `condition`, `test_doc`...); task-level numbers such as the slope
of a few-shot curve are `Summary`s computed from the per-item results by `evalkit.aggregate`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import Loglikelihood, Request, Response, TokenLogprobs, TokenLogprobsResult
from evalkit.tasks.base import (
    Item,
    ItemResult,
    MetricSpec,
    TagValue,
    TaskDefaults,
    TokenizerInfo,
    items_hash,
    text_hash,
)
from evalkit.tasks.probes.common import (
    MC_METRICS,
    Bucket,
    ProbeSpec,
    Summary,
    group_mean,
    load_docs,
    mc_values,
    ols_slope,
)
from evalkit.tasks.probes.niah import NiahTask
from evalkit.tasks.specs import FromSpec
from evalkit.tasks.templates import Renderer

DEFAULT_KS: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32)


def _tag(value: Any) -> TagValue:
    return value if isinstance(value, str | int | float | bool) else str(value)


class _Probe(FromSpec, TaskDefaults):
    spec: ProbeSpec

    source = "native"
    keys: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        unknown = set(spec.params) - self.keys
        if unknown:
            raise EvalkitError(
                f"malformed task spec {spec.source_file}: unknown key(s) for probe "
                f"{spec.probe}: {', '.join(sorted(unknown))}"
            )
        missing = self.required - set(spec.params)
        if missing:
            raise EvalkitError(
                f"malformed task spec {spec.source_file}: probe {spec.probe} needs "
                f"{', '.join(sorted(missing))}"
            )
        self.r = Renderer(spec.name)

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return MC_METRICS

    @property
    def summaries(self) -> tuple[Summary, ...]:
        return ()

    def content_hash(self, items: Sequence[Item]) -> str:
        return items_hash(items)

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        raise NotImplementedError

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        raise NotImplementedError

    def _p(self, key: str, default: Any = None) -> Any:
        return self.spec.params.get(key, default)

    def _fail(self, message: str) -> EvalkitError:
        return EvalkitError(f"malformed task spec {self.spec.source_file}: {message}")

    def _need_tokenizer(self, tokenizer: TokenizerInfo | None) -> TokenizerInfo:
        if tokenizer is None:
            raise EvalkitError(f"task {self.name} needs the model's tokenizer to build its items")
        return tokenizer


# -- multiple-choice probes with demonstrations -------------------------------------------------


class _MCProbe(_Probe):
    """Shared by the few-shot curve and the label probes: docs, templates, demonstrations."""

    def __init__(self, spec: ProbeSpec) -> None:
        super().__init__(spec)
        self._docs: list[dict[str, Any]] | None = None
        self.prompt = str(self._p("prompt", ""))
        self.choices_key = str(self._p("choices", "choices"))
        self.gold_key = str(self._p("gold", "gold"))
        self.delimiter = str(self._p("target_delimiter", " "))
        self.separator = str(self._p("separator", "\n\n"))
        self.tags = tuple(str(t) for t in self._p("tags", []) or [])
        seeds = self._p("seeds", 5)
        self.seeds: tuple[int, ...] = (
            tuple(range(int(seeds))) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
        )
        self.n_test = int(self._p("n_test", 20))
        if not self.prompt or not self.seeds or self.n_test < 1:
            raise self._fail("needs a 'prompt', at least one seed and n_test >= 1")

    def docs(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = load_docs(self.name, self._p("docs", {}))
        return self._docs

    def _split(self, limit: int | None, max_k: int) -> tuple[list[int], list[int]]:
        """Test documents first, the rest a disjoint pool of demonstrations."""
        docs = self.docs()
        if len(docs) < self.n_test + max_k:
            raise EvalkitError(
                f"task {self.name}: {self.n_test} test docs and {max_k}-shot need at least "
                f"{self.n_test + max_k} docs, the generator gave {len(docs)}"
            )
        n = self.n_test if limit is None else min(limit, self.n_test)
        return list(range(n)), list(range(self.n_test, len(docs)))

    def _shot(self, j: int, label: int | None = None) -> str:
        doc = self.docs()[j]
        choices, gold = self.r.choices(doc, self.choices_key, self.gold_key, j)
        answer = choices[gold if label is None else label]
        return self.r.render("prompt", self.prompt, doc, j) + self.delimiter + answer

    def _mc_item(
        self, doc_id: int, i: int, demos: Sequence[str], tags: list[tuple[str, TagValue]]
    ) -> Item:
        doc = self.docs()[i]
        choices, gold = self.r.choices(doc, self.choices_key, self.gold_key, i)
        head = "".join(d + self.separator for d in demos)
        prompt = head + self.r.render("prompt", self.prompt, doc, i)
        requests = tuple(Loglikelihood(prompt, self.delimiter + c) for c in choices)
        doc_tags = [(t, _tag(self.r.field(doc, t, i))) for t in self.tags]
        all_tags: list[tuple[str, TagValue]] = [
            ("family", self.family),
            ("test_doc", i),
            *tags,
            *doc_tags,
        ]
        return Item(doc_id, prompt, requests, choices[gold], tuple(all_tags))

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        out = []
        for it, resps in zip(items, responses, strict=True):
            i = int(dict(it.tags)["test_doc"])
            choices, gold = self.r.choices(self.docs()[i], self.choices_key, self.gold_key, i)
            lls, values = mc_values(resps, choices, gold, self.delimiter)
            best = max(range(len(lls)), key=lls.__getitem__)
            out.append(
                ItemResult(
                    doc_id=it.doc_id,
                    prompt_hash=text_hash(it.prompt),
                    loglikelihoods=lls,
                    prediction=choices[best],
                    target=it.target,
                    metrics=values,
                    tags=dict(it.tags),
                )
            )
        return out


class FewShotCurveTask(_MCProbe):
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
            Summary(f"{m}[k={k}]", _by_tag(m, "k", k), bucket=Bucket(m, (("k", k),)))
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


def _by_tag(metric: str, tag: str, value: TagValue) -> Any:
    def compute(results: Sequence[ItemResult]) -> float:
        return group_mean(results, metric, tag, value)

    return compute


def _slope(metric: str) -> Any:
    def compute(results: Sequence[ItemResult]) -> float:
        ks = sorted({int(r.tags["k"]) for r in results})
        means = [group_mean(results, metric, "k", k) for k in ks]
        return ols_slope([math.log2(k + 1) for k in ks], means)

    return compute


class LabelProbeTask(_MCProbe):
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
                _by_tag("acc", "condition", c),
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


# -- token-level probes -----------------------------------------------------------------------


def _random_tokens(rng: random.Random, tok: TokenizerInfo, count: int) -> list[int]:
    """`count` ids uniform over the ordinary tokens: ids that decode to a non-empty text and
    are not the prefix (BOS) token; a rejected draw is redrawn."""
    out: list[int] = []
    ok: dict[int, bool] = {}
    while len(out) < count:
        t = rng.randrange(tok.vocab_size)
        if t not in ok:
            ok[t] = t != tok.prefix_token_id and tok.decode([t]) != ""
        if ok[t]:
            out.append(t)
    return out


def _token_result(resps: Sequence[Response]) -> TokenLogprobsResult:
    (r,) = resps
    if not isinstance(r, TokenLogprobsResult):
        raise TypeError(f"expected a token_logprobs result, got {type(r).__name__}")
    return r


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


class InductionTask(_Probe):
    """BOS + r + r, r of L ~ U{min_len..max_len} tokens drawn uniformly (see `_random_tokens`)
    with `random.Random(f"{seed}:{doc}")`. Scored on tokens 2..L of each copy (token 1 of the
    second copy cannot be predicted by copying): `copy_loss`/`copy_acc` (mean NLL in nats /
    top-1 hit rate on the second copy), `first_loss`/`first_acc` (the same positions of the
    first copy), `induction_gain` = first_loss - copy_loss."""

    keys = frozenset({"n", "seed", "min_len", "max_len"})
    required = frozenset({"n"})

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return (
            MetricSpec("copy_acc"),
            MetricSpec("copy_loss", higher_is_better=False),
            MetricSpec("first_acc"),
            MetricSpec("first_loss", higher_is_better=False),
            MetricSpec("induction_gain"),
        )

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        tok = self._need_tokenizer(tokenizer)
        n = int(self._p("n"))
        lo, hi = int(self._p("min_len", 50)), int(self._p("max_len", 100))
        if not 2 <= lo <= hi:
            raise self._fail("needs 2 <= min_len <= max_len")
        seed = int(self._p("seed", 0))
        out = []
        for i in range(n if limit is None else min(limit, n)):
            rng = random.Random(f"{seed}:{i}")
            r = _random_tokens(rng, tok, rng.randint(lo, hi))
            tokens = (tok.prefix_token_id, *r, *r)
            req: Request = TokenLogprobs(tokens=tokens)
            tags = (("family", self.family), ("length", len(r)), ("seed", seed))
            out.append(Item(i, f"<{len(r)} random tokens, twice>", (req,), f"copy:{len(r)}", tags))
        return out

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        out = []
        for it, resps in zip(items, responses, strict=True):
            res = _token_result(resps)
            length = int(dict(it.tags)["length"])
            values = induction_metrics(res.logprobs, res.greedy, length)
            out.append(
                ItemResult(
                    it.doc_id, text_hash(it.prompt), (), None, it.target, values, dict(it.tags)
                )
            )
        return out


def induction_metrics(
    logprobs: Sequence[float], greedy: Sequence[bool], length: int
) -> dict[str, float]:
    """Per-token values of [r1..rL, r1..rL] (the predictions after BOS) -> induction metrics."""
    if len(logprobs) != 2 * length or len(greedy) != 2 * length:
        raise ValueError(f"expected {2 * length} token values, got {len(logprobs)}")
    first = range(1, length)
    second = range(length + 1, 2 * length)
    first_loss = _mean([-logprobs[j] for j in first])
    copy_loss = _mean([-logprobs[j] for j in second])
    return {
        "copy_acc": _mean([float(greedy[j]) for j in second]),
        "copy_loss": copy_loss,
        "first_acc": _mean([float(greedy[j]) for j in first]),
        "first_loss": first_loss,
        "induction_gain": first_loss - copy_loss,
    }


def olsson_positions(early: int, late: int, window: int) -> tuple[int, int]:
    """Token positions (1-based, in the document) whose losses define the ICL score: (early,
    late) when a BOS + `late` tokens fit the window, else both scaled by (window - 1) / late
    (rounded down, early at least 1)."""
    if window - 1 >= late:
        return early, late
    scale = (window - 1) / late
    return max(1, math.floor(early * scale)), window - 1


class OlssonTask(_Probe):
    """In-context-learning score (Olsson et al. 2022): loss at document token `late` minus
    loss at token `early` (1-based; loss = -log p(t_i | BOS, t_1..t_{i-1}) in nats) on
    documents of at least `late` tokens, fed as BOS + their first `late` tokens. Negative means
    later tokens are predicted better, i.e. the model uses its context. `window` gives the
    positions (`olsson_positions`) when it is shorter than BOS + late tokens; without a
    `window` key, the model's own window is used."""

    keys = frozenset({"docs", "field", "early", "late", "window"})
    required = frozenset({"docs"})

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return (
            MetricSpec("icl_score", higher_is_better=False),
            MetricSpec("loss_early", higher_is_better=False),
            MetricSpec("loss_late", higher_is_better=False),
        )

    def positions(self, model_window: int | None = None) -> tuple[int, int]:
        """`window` from the YAML if set, else the model's (when known), else unlimited."""
        early, late = int(self._p("early", 50)), int(self._p("late", 500))
        if not 1 <= early < late:
            raise self._fail("needs 1 <= early < late")
        window = self._p("window", model_window or late + 1)
        return olsson_positions(early, late, int(window))

    def items(self, limit: int | None = None, tokenizer: TokenizerInfo | None = None) -> list[Item]:
        tok = self._need_tokenizer(tokenizer)
        # Tokenizers handed over without a window (tests, scripts) keep the YAML default.
        early, late = self.positions(getattr(tok, "max_context", None))
        docs = load_docs(self.name, self._p("docs", {}))
        key = str(self._p("field", "text"))
        out = []
        for i, doc in enumerate(docs[: len(docs) if limit is None else limit]):
            text = str(self.r.field(doc, key, i))
            ids = tok.encode_plain(text)
            if len(ids) < late:
                raise EvalkitError(
                    f"task {self.name}: doc {i} has {len(ids)} tokens, fewer than {late}"
                )
            req: Request = TokenLogprobs(tokens=(tok.prefix_token_id, *ids[:late]))
            tags = (("family", self.family), ("early", early), ("late", late))
            out.append(Item(i, text, (req,), f"tokens:{late}", tags))
        return out

    def score(
        self, items: Sequence[Item], responses: Sequence[Sequence[Response]]
    ) -> list[ItemResult]:
        out = []
        for it, resps in zip(items, responses, strict=True):
            lps = _token_result(resps).logprobs
            tags = dict(it.tags)
            early, late = int(tags["early"]), int(tags["late"])
            loss_early, loss_late = -lps[early - 1], -lps[late - 1]
            values = {
                "icl_score": loss_late - loss_early,
                "loss_early": loss_early,
                "loss_late": loss_late,
            }
            out.append(
                ItemResult(it.doc_id, text_hash(it.prompt), (), None, it.target, values, tags)
            )
        return out


PROBES: Mapping[str, type[_Probe] | type[NiahTask]] = {
    "fewshot_curve": FewShotCurveTask,
    "label_probe": LabelProbeTask,
    "induction": InductionTask,
    "olsson": OlssonTask,
    "niah": NiahTask,
}


def make_probe(spec: ProbeSpec) -> _Probe | NiahTask:
    try:
        cls = PROBES[spec.probe]
    except KeyError:
        raise EvalkitError(
            f"malformed task spec {spec.source_file}: unknown probe {spec.probe!r} "
            f"(known: {', '.join(sorted(PROBES))})"
        ) from None
    return cls(spec)


_COMMON = {"name", "family", "version", "description", "kind", "probe"}


def load_probe_spec(path: Any, raw: Mapping[str, Any]) -> ProbeSpec:
    for key in ("name", "family", "version", "probe"):
        if key not in raw:
            raise EvalkitError(f"malformed task spec {path}: missing required key {key!r}")
    spec = ProbeSpec(
        name=str(raw["name"]),
        family=str(raw["family"]),
        version=str(raw["version"]),
        probe=str(raw["probe"]),
        source_file=path,
        description=str(raw.get("description", "")),
        params={k: v for k, v in raw.items() if k not in _COMMON},
    )
    make_probe(spec)  # validates the probe's keys now, naming the file
    return spec
