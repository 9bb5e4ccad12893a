"""Token-level probes, scored from per-token log-probabilities: induction copying of random
tokens and the in-context-learning score of Olsson et al. 2022 (docs/transfer.md)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from evalkit.errors import EvalkitError
from evalkit.requests import Request, Response, TokenLogprobs, TokenLogprobsResult
from evalkit.tasks.base import Item, ItemResult, MetricSpec, TokenizerInfo, text_hash
from evalkit.tasks.probes.common import Probe, load_docs


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


class InductionTask(Probe):
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


class OlssonTask(Probe):
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
