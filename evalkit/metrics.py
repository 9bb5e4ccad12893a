"""Pure per-item metric functions (no I/O, no model): the vocabulary tasks score with."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LN2 = math.log(2.0)


@dataclass(frozen=True)
class MetricInfo:
    """What a reader needs to know of a per-item metric: its direction and its unit."""

    name: str
    higher_is_better: bool
    unit: str = ""  # for axis labels; empty where the metric has none worth naming


# The shared per-item metrics computed here, declared once: tasks take their direction from it,
# reports their units. A task's own metrics (a probe's copy_loss) are declared on the task.
CATALOG: Mapping[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("acc", True, "fraction of items"),
        MetricInfo("acc_norm", True, "fraction of items"),
        MetricInfo("exact_match", True, "fraction of items"),
        MetricInfo("p_correct", True, "probability"),
        MetricInfo("prob_correct", True, "probability"),
        MetricInfo("p_correct_char", True),
        MetricInfo("margin", True, "nats"),
        MetricInfo("margin_char", True),
        MetricInfo("bpb", False, "bits per byte"),
        MetricInfo("logprob", True, "nats"),
    )
}


def argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def softmax_probability(logprobs: Sequence[float], index: int) -> float:
    """Probability of choice `index` renormalized over the choices (DataDecide's p_correct)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    return weights[index] / sum(weights)


def bits_per_byte(logprob: float, text: str) -> float:
    n_bytes = len(text.encode("utf-8"))
    if n_bytes == 0:
        raise ValueError("bits-per-byte of an empty text")
    return -logprob / (LN2 * n_bytes)


def multiple_choice(
    logprobs: Sequence[float], choices: Sequence[str], gold: int, delimiter: str = " "
) -> dict[str, float]:
    """acc (raw log-likelihood), acc_norm (per character of the choice text, as lm-eval),
    p_correct, and bits-per-byte of the gold continuation (delimiter included: it was scored)."""
    if len(logprobs) != len(choices) or not choices:
        raise ValueError("one log-likelihood per choice is required")
    if not 0 <= gold < len(choices):
        raise ValueError(f"gold index {gold} outside {len(choices)} choices")
    per_char = [lp / max(len(c), 1) for lp, c in zip(logprobs, choices, strict=True)]
    return {
        "acc": float(argmax(logprobs) == gold),
        "acc_norm": float(argmax(per_char) == gold),
        "p_correct": softmax_probability(logprobs, gold),
        "bpb": bits_per_byte(logprobs[gold], delimiter + choices[gold]),
        # DataDecide's continuous metrics and their character-normalized variants.
        "prob_correct": math.exp(logprobs[gold]),
        "margin": margin(logprobs, gold),
        "p_correct_char": softmax_probability(per_char, gold),
        "margin_char": margin(per_char, gold),
    }


def margin(values: Sequence[float], gold: int) -> float:
    """The gold value minus the best wrong one (log-likelihoods: nats); > 0 iff gold wins
    outright. Needs at least two choices."""
    wrong = [v for i, v in enumerate(values) if i != gold]
    if not wrong:
        raise ValueError("a margin needs at least two choices")
    return values[gold] - max(wrong)


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_number(text: str, select: str = "first") -> str | None:
    """The first (or last) number in `text`, thousands separators removed, trailing `.0` kept
    as written; None when there is none."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    value = found[0] if select == "first" else found[-1]
    return value.replace(",", "")


def exact_match(prediction: str | None, target: str) -> float:
    return float(prediction is not None and prediction.strip() == target.strip())
