"""Between lm-eval's values and evalkit's, both ways: an lm-eval `Instance` becomes a frozen
evalkit request (`to_request`, generation kwargs normalized as lm-eval's backends do), an engine
response becomes the instance's `resps` as lm-eval's LM would set them (`lm_resps`), and what
`process_results` gives per item becomes a storable metric value (`metric_value`). No task state
here: LMEvalTask (lmeval.py) drives lm-eval with these.

lm-eval is imported inside functions only: importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    Response,
    RollingLoglikelihood,
    RollingResult,
)
from evalkit.tasks.base import MetricValue

# lm_eval.defaults: HFLM's max_gen_toks.
DEFAULT_MAX_GEN_TOKS = 256
# Generation kwargs that only shape sampling: harmless (ignored) under greedy decoding.
_SAMPLING_ONLY_KWARGS = frozenset({"top_p", "top_k", "min_p", "typical_p"})


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    return text or type(exc).__name__


def generate_request(task_name: str, context: str, gen_kwargs: Mapping[str, Any]) -> Generate:
    """lm-eval's `generate_until` arguments as a Generate request, normalized as lm-eval's
    backends normalize them (`normalize_gen_kwargs`: max-token aliases, do_sample/temperature)."""
    from lm_eval.models.utils import normalize_gen_kwargs

    try:
        kw = dict(normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_MAX_GEN_TOKS))
    except (TypeError, ValueError) as exc:
        raise EvalkitError(
            f"task {task_name}: bad generation_kwargs {dict(gen_kwargs)!r}: {first_line(exc)}"
        ) from None
    until = tuple(str(s) for s in kw.pop("until"))
    max_tokens = int(kw.pop("max_gen_toks"))
    do_sample = bool(kw.pop("do_sample", False))
    temperature = float(kw.pop("temperature", 0.0) or 0.0)
    sampled = do_sample and temperature > 0
    rest = set(kw) - (set() if sampled else _SAMPLING_ONLY_KWARGS)
    if rest:
        raise EvalkitError(
            f"task {task_name}: generation_kwargs {sorted(rest)} are not supported by evalkit's "
            "engine (it decodes greedily, or samples at a temperature from the full distribution)"
        )
    return Generate(
        prompt=context,
        stop=until,
        max_tokens=max_tokens,
        temperature=temperature if sampled else 0.0,
    )


def to_request(task_name: str, inst: Any, seed: int = 0) -> Request:
    args = inst.args
    kind = inst.request_type
    if any(isinstance(a, dict) for a in args[2:]) or (kind == "loglikelihood" and len(args) != 2):
        raise EvalkitError(f"task {task_name}: multimodal requests are not supported")
    if kind == "loglikelihood":
        return Loglikelihood(context=str(args[0]), continuation=str(args[1]))
    if kind == "loglikelihood_rolling":
        return RollingLoglikelihood(text=str(args[0]))
    if kind == "generate_until":
        request = generate_request(task_name, str(args[0]), args[1])
        repeats = int(inst.repeats or 1)
        if repeats > 1 and request.temperature > 0:
            # lm-eval samples `repeats` times; a greedy request is answered once and repeated.
            return Generate(
                prompt=request.prompt,
                stop=request.stop,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                n=repeats,
                seed=seed,
            )
        return dataclasses.replace(request, seed=seed) if request.temperature > 0 else request
    raise EvalkitError(f"task {task_name}: unsupported lm-eval request type {kind!r}")


def lm_resps(request: Request, response: Response, repeats: int) -> list[Any]:
    """An instance's `resps`, as lm-eval's evaluator fills them from its LM's answers."""
    if isinstance(request, Loglikelihood) and isinstance(response, LoglikelihoodResult):
        return [(float(response.logprob), bool(response.is_greedy))] * repeats
    if isinstance(request, RollingLoglikelihood) and isinstance(response, RollingResult):
        return [float(response.logprob)] * repeats
    if isinstance(request, Generate) and isinstance(response, GenerateResult):
        texts = list(response.texts)
        if len(texts) == repeats:
            return texts
        if len(texts) == 1:
            return texts * repeats
        raise ValueError(f"{len(texts)} generations for a request repeated {repeats} times")
    raise TypeError(f"a {type(response).__name__} does not answer a {request.kind} request")


class LMAggregate:
    """lm-eval's aggregation function as a MetricSpec aggregate (picklable)."""

    def __init__(self, fn: Callable[[list[Any]], Any]) -> None:
        self.fn = fn

    def __call__(self, values: Sequence[MetricValue]) -> float:
        return float(self.fn(list(values)))


def _number(x: Any) -> float:
    if isinstance(x, str | bytes) or not hasattr(x, "__float__"):
        raise TypeError(type(x).__name__)
    return float(x)


def metric_value(task_name: str, metric: str, value: Any) -> MetricValue:
    try:
        if isinstance(value, tuple | list):
            return tuple(_number(v) for v in value)
        return _number(value)
    except (TypeError, ValueError):
        raise EvalkitError(
            f"task {task_name}: metric {metric!r} gives per-item values of type "
            f"{type(value).__name__}, which evalkit cannot store (numbers or flat tuples of "
            "numbers only)"
        ) from None


def as_text(filtered: Any) -> str:
    if isinstance(filtered, str):
        return filtered
    if isinstance(filtered, list | tuple) and filtered and isinstance(filtered[0], str):
        return filtered[0]
    return str(filtered)
