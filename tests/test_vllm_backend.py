"""The vLLM backend against a faithful fake of vLLM's API (tests/fake_vllm.py), whose numbers
come from the tiny checkpoint through transformers: evalkit's vLLM path must give what its HF
path gives, on every request kind of the smoke and transfer suites, in any request order."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import fake_vllm
import pytest
from conftest import TINY_BASE

from evalkit.backends.base import GenerationJob, ScoringGroup
from evalkit.backends.hf import HFBackend, load_tokenizer
from evalkit.engine import Engine, EngineOptions
from evalkit.requests import (
    Generate,
    GenerateResult,
    LoglikelihoodResult,
    Request,
    RollingResult,
    TokenLogprobsResult,
)
from evalkit.tasks.base import WindowedTokenizer
from evalkit.tasks.registry import load_suite, resolve_tasks

TOL = 1e-4


def _inject(monkeypatch: pytest.MonkeyPatch, version: str) -> Any:
    mod = fake_vllm.make_module(version)
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


@pytest.fixture(params=["new", "old"])
def vllm_version(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    _inject(monkeypatch, request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def hf() -> HFBackend:
    return HFBackend(TINY_BASE, device="cpu", dtype="float32")


def _vllm(**kw: Any) -> Any:
    from evalkit.backends.vllm import VLLMBackend
    from evalkit.backends.vllm_options import VLLMOptions

    backend = VLLMBackend(TINY_BASE, options=VLLMOptions(**kw))
    backend.llm.calls.clear()  # the start-up probe's request is not what a test counts
    return backend


def _suite_requests(suite: str, limit: int) -> list[Request]:
    # Tasks sized to the window (needle prompts) see the checkpoint's window on every backend.
    tok = WindowedTokenizer(load_tokenizer(TINY_BASE), 512)
    tasks = resolve_tasks(list(load_suite(suite).tasks))
    return [r for t in tasks for it in t.items(limit, tok) for r in it.requests]


@pytest.fixture(scope="module")
def suite_requests() -> list[Request]:
    # A few items per task keep it quick; every request kind is still there.
    reqs = _suite_requests("smoke", 3) + _suite_requests("transfer", 1)
    return list({r.hash: r for r in reqs}.values())


@pytest.fixture(scope="module")
def hf_answers(hf: HFBackend, suite_requests: list[Request]) -> dict[str, Any]:
    return Engine(hf, None, EngineOptions(progress=False)).run(suite_requests).responses


def _assert_same(a: Any, b: Any, where: str) -> None:
    assert type(a) is type(b), where
    if isinstance(a, LoglikelihoodResult):
        assert abs(a.logprob - b.logprob) < TOL, where
        assert (a.n_tokens, a.is_greedy) == (b.n_tokens, b.is_greedy), where
    elif isinstance(a, RollingResult):
        assert abs(a.logprob - b.logprob) < TOL and a.n_tokens == b.n_tokens, where
    elif isinstance(a, TokenLogprobsResult):
        assert len(a.logprobs) == len(b.logprobs), where
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < TOL, where
        assert a.greedy == b.greedy, where
    elif isinstance(a, GenerateResult):
        assert a.texts == b.texts, where
    else:  # pragma: no cover
        raise AssertionError(f"unexpected response {type(a).__name__}")


def test_vllm_path_matches_hf_path_on_smoke_and_transfer(
    vllm_version: str, suite_requests: list[Request], hf_answers: dict[str, Any]
) -> None:
    kinds = {type(r).__name__ for r in suite_requests}
    # Every request kind the suites have is covered.
    assert kinds == {"Loglikelihood", "RollingLoglikelihood", "Generate", "TokenLogprobs"}
    backend = _vllm()
    got = Engine(backend, None, EngineOptions(progress=False)).run(suite_requests).responses
    assert set(got) == set(hf_answers)
    for h, want in hf_answers.items():
        _assert_same(got[h], want, f"{vllm_version}: {h[:12]}")
    # One engine for the run; scoring and generation reached it in one `generate` call.
    assert len(backend.llm.calls) == 1 if vllm_version == "new" else len(backend.llm.calls) >= 1


def test_request_shapes_follow_the_version(vllm_version: str) -> None:
    backend = _vllm()
    ctx = tuple(backend.tokenizer.encode("Question: 2 + 3 = ? Answer:"))
    choices = tuple((t,) for t in backend.tokenizer.encode_plain(" 5 6 7 8")[::2])
    long = tuple(backend.tokenizer.encode_plain(" five and six"))
    backend.score([ScoringGroup(ctx, (*choices, long))])
    params = [p for call in backend.llm.calls for p in call]
    if vllm_version == "new":
        # One request for all the one-token choices, max_tokens=1, no prompt log-probs (so
        # the prefix cache serves the context), and one forced decode for the long answer.
        assert len(params) == 2
        mc = next(p for p in params if p.logprob_token_ids)
        assert mc.max_tokens == 1 and mc.prompt_logprobs is None
        assert sorted(mc.logprob_token_ids) == sorted({c[0] for c in choices})
        forced = next(p for p in params if p.trace_decode_token_ids)
        assert forced.trace_decode_token_ids == list(long) and forced.prompt_logprobs is None
        assert forced.ignore_eos
    else:
        assert any(p.logprobs and p.max_tokens == 1 for p in params)
        pl = [p for p in params if p.prompt_logprobs is not None]
        # The long answer, and any choice outside the top k, scored exactly by prompt log-probs.
        assert pl and all(p.prompt_logprobs == 0 and p.detokenize is False for p in pl)
    args = backend.llm.engine_args
    assert args["enable_prefix_caching"] is True
    assert args["max_num_batched_tokens"] >= 2048


def test_results_do_not_depend_on_request_order(monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, "new")
    backend = _vllm()
    tok = backend.tokenizer
    preamble = tok.encode("Q: 1 + 1 = 2\nQ: 2 + 2 = 4\nQ: 3 + 3 = 6\nQ: 4 + 4 = 8\n" * 3)
    groups = []
    for a in range(8):
        ctx = tuple(preamble + tok.encode_plain(f"Q: {a} + 5 ="))
        conts = tuple(tuple(tok.encode_plain(s)) for s in (f" {a + 5}", " 12 or 13", " 7"))
        groups.append(ScoringGroup(ctx, conts))
    jobs = [GenerationJob(tuple(preamble), ("\n",), 8, 0.0, 1, 0)]
    first, texts = backend.score_and_generate(groups, jobs)
    order = list(range(len(groups)))
    random.Random(7).shuffle(order)
    # Same engine: its prefix cache now holds every prompt of the first pass.
    again, texts2 = backend.score_and_generate([groups[i] for i in order], jobs)
    for pos, i in enumerate(order):
        for x, y in zip(first[i], again[pos], strict=True):
            assert x.token_logprobs == y.token_logprobs and x.token_greedy == y.token_greedy
    assert texts == texts2


@pytest.mark.parametrize("skip", [True, False])
def test_the_fake_shows_vllm_42019_only_when_prompt_logprobs_read_the_cache(
    monkeypatch: pytest.MonkeyPatch, skip: bool
) -> None:
    """The order test above can fail: prompt log-probs that read cached blocks are stale."""
    mod = _inject(monkeypatch, "new")
    llm = mod.LLM(str(TINY_BASE))
    tok = load_tokenizer(TINY_BASE)
    shared = tok.encode("The cat sat on the mat and looked at the dog. " * 4)
    a, b = shared + tok.encode_plain(" yes"), shared + tok.encode_plain(" no")
    params = mod.SamplingParams(prompt_logprobs=0, max_tokens=1, skip_reading_prefix_cache=skip)
    fresh = llm.generate([mod.TokensPrompt(prompt_token_ids=b)], params)[0]
    other = tok.encode("Numbers: one two three four five six seven eight nine ten. " * 4)
    llm2 = mod.LLM(str(TINY_BASE))
    # `a` fills the prefix cache, an unrelated prompt overwrites the output rows, then `b`.
    for ids in (a, other):
        llm2.generate([mod.TokensPrompt(prompt_token_ids=ids)], params)
    warm = llm2.generate([mod.TokensPrompt(prompt_token_ids=b)], params)[0]
    assert (warm.num_cached_tokens > 0) != skip
    n = len(b)
    vals = [
        [next(iter(x.prompt_logprobs[i].values())).logprob for i in range(1, n)]
        for x in (fresh, warm)
    ]
    assert (vals[0] == vals[1]) == skip


def test_one_engine_is_built_and_options_reach_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, "new")
    backend = _vllm(
        tensor_parallel_size=2,
        data_parallel_size=2,
        gpu_memory_utilization=0.8,
        max_model_len=256,
        max_num_batched_tokens=4096,
    )
    args = backend.llm.engine_args
    assert args["tensor_parallel_size"] == 2 and args["data_parallel_size"] == 2
    # One slot more than the longest fed sequence: the sampled token.
    assert args["gpu_memory_utilization"] == 0.8 and args["max_model_len"] == 257
    assert args["max_num_batched_tokens"] == 4096
    # Tasks keep the checkpoint's window; the engine's shorter limit skips items instead.
    assert backend.max_length == 512 and backend.feed_limit == 256
    assert backend.settings["features"] == (
        "logprob_token_ids,trace_decode,flat_logprobs,skip_reading_prefix_cache"
    )
    assert backend.settings["scoring_path"] == "forced_decoding"
    assert args["enable_trace_replay"] is True


def test_scoring_step_is_bounded_by_the_memory_for_prompt_logprobs() -> None:
    from evalkit.backends.vllm_options import PROMPT_LOGPROB_BYTES, scoring_step_tokens

    step = scoring_step_tokens(128_000, 2.0, 8192)
    assert step * 128_000 * PROMPT_LOGPROB_BYTES <= 2 * (1 << 30)
    assert step % 256 == 0 and step >= 2048
    assert scoring_step_tokens(32_000, 2.0, 2048) > step  # smaller vocabulary, more tokens
    assert scoring_step_tokens(10**9, 0.1, 2048) == 2048  # never below a useful floor


def test_generation_samples_and_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, "new")
    backend = _vllm()
    prompt = tuple(backend.tokenizer.encode("1 + 2 = 3\n4 + 5 ="))
    jobs = [
        GenerationJob(prompt, ("\n",), 12, 0.0, 1, 0),
        GenerationJob(prompt, (), 6, 0.8, 3, 42),
    ]
    texts = backend.generate(jobs)
    assert len(texts[0]) == 1 and "\n" not in texts[0][0]
    assert len(texts[1]) == 3
    assert backend.generate(jobs) == texts  # seeded: reproducible


def test_engine_hands_scoring_and_generation_over_together(monkeypatch: pytest.MonkeyPatch) -> None:
    _inject(monkeypatch, "new")
    backend = _vllm()
    reqs: list[Request] = [
        Generate(prompt="1 + 1 =", stop=("\n",), max_tokens=4),
        *_suite_requests("smoke", 2),
    ]
    Engine(backend, None, EngineOptions(progress=False)).run(reqs)
    assert len(backend.llm.calls) == 1
    assert any(p.detokenize for p in backend.llm.calls[0])  # the generation request
    assert any(p.max_tokens == 1 and p.logprob_token_ids for p in backend.llm.calls[0])


def test_missing_vllm_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from evalkit.errors import EvalkitError

    monkeypatch.setitem(sys.modules, "vllm", None)  # import fails
    with pytest.raises(EvalkitError, match="vLLM is not importable"):
        _vllm()


def test_auto_picks_vllm_only_with_a_gpu_and_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from evalkit.api import load_backend
    from evalkit.backends.vllm import VLLMBackend, vllm_available

    _inject(monkeypatch, "new")
    assert not vllm_available()  # no GPU here
    assert isinstance(load_backend(TINY_BASE, "auto"), HFBackend)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert vllm_available()
    assert isinstance(load_backend(TINY_BASE, "auto"), VLLMBackend)
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert not vllm_available()


def test_vllm_runs_on_its_cpu_build_with_cpu_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from evalkit.api import load_backend
    from evalkit.backends.vllm_options import CPU_MEMORY_SHARE
    from evalkit.errors import EvalkitError

    monkeypatch.setitem(sys.modules, "vllm", fake_vllm.make_module("new", platform="cpu"))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    seen: dict[str, str | None] = {}
    real_init = fake_vllm.LLM.__init__

    def spy(self: Any, model: str, **kw: Any) -> None:
        seen["kv"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        real_init(self, model, **kw)

    monkeypatch.setattr(fake_vllm.LLM, "__init__", spy)
    backend = load_backend(TINY_BASE, "vllm", device="cpu")
    args = backend.llm.engine_args  # type: ignore[attr-defined]
    assert args["gpu_memory_utilization"] == CPU_MEMORY_SHARE
    assert seen["kv"] == "1" and "VLLM_CPU_KVCACHE_SPACE" not in os.environ  # only for the start
    # No trace replay on the CPU platform: never asked for, prompt log-probs recorded.
    assert "enable_trace_replay" not in args
    assert backend.settings["scoring_path"] == "prompt_logprobs"
    assert "not on CPU" in backend.settings["scoring_path_reason"]
    assert backend.settings["device"] == "cpu"
    opts = ["gpu_memory_utilization=0.2", "cpu_kvcache_space_gib=3"]
    backend = load_backend(TINY_BASE, "vllm", device="cpu", vllm_options=opts)
    assert backend.llm.engine_args["gpu_memory_utilization"] == 0.2  # type: ignore[attr-defined]
    assert seen["kv"] == "3"
    with pytest.raises(EvalkitError, match="CPU build"):
        load_backend(TINY_BASE, "vllm", device="cuda")
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm.make_module("new", platform="cuda"))
    with pytest.raises(EvalkitError, match="vllm-cpu"):
        load_backend(TINY_BASE, "vllm", device="cpu")


def test_trace_replay_is_used_only_when_the_probe_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced decoding comes from the engine, not from the field's presence."""
    mod = _inject(monkeypatch, "new")
    assert _vllm().path.forced_decoding
    # An engine that takes the flag but does not replay (returns greedy tokens instead).
    real_run = fake_vllm.LLM._run

    def no_replay(self: Any, ids: list[int], p: Any) -> Any:
        p.trace_decode_token_ids = None
        return real_run(self, ids, p)

    monkeypatch.setattr(fake_vllm.LLM, "_run", no_replay)
    backend = _vllm()
    assert not backend.path.forced_decoding and "did not replay" in backend.path.reason
    ctx = tuple(backend.tokenizer.encode("Question: 2 + 3 = ? Answer:"))
    long = tuple(backend.tokenizer.encode_plain(" five and six"))
    backend.score([ScoringGroup(ctx, (long,))])
    assert not any(p.trace_decode_token_ids for c in backend.llm.calls for p in c)
    # An engine that refuses the flag at start-up: built again without it.
    monkeypatch.setattr(mod.LLM, "platform", "cpu")
    monkeypatch.setattr("evalkit.backends.vllm.is_cpu_build", lambda vllm: False)
    backend = _vllm()
    assert "refused trace replay" in backend.path.reason
    assert "enable_trace_replay" not in backend.llm.engine_args
    # trace_replay=off is honoured.
    monkeypatch.setattr(mod.LLM, "platform", "cuda")
    assert _vllm(trace_replay="off").path.reason == "trace_replay=off"


def test_full_window_items_are_scored_not_cut(
    vllm_version: str, monkeypatch: pytest.MonkeyPatch, hf: HFBackend
) -> None:
    """A request that fills the model's window exactly: the HF backend scores it, so the vLLM
    backend must too (new releases), or skip it whole (old ones) -- never change it."""
    backend = _vllm()
    ids = tuple(backend.tokenizer.encode("key cat is 12. key dog is 7. " * 60))
    ctx, cont = ids[: 512 - 5], ids[512 - 5 : 512 + 1]  # 6-token answer, 512 tokens fed
    assert len(ctx) + len(cont) - 1 == 512
    mc_ctx = ids[:512]  # one-token answers after a 512-token context
    want = hf.score([ScoringGroup(ctx, (cont,)), ScoringGroup(mc_ctx, ((5,), (9,)))])
    if vllm_version == "old":
        assert backend.feed_limit == 511
        from evalkit.requests import Loglikelihood, RollingLoglikelihood

        # A rolling text's first window feeds exactly the window's 512 tokens.
        text = "key cat is 12. key dog is 7. " * 60
        reqs = [RollingLoglikelihood(text), Loglikelihood("key", " cat")]
        result = Engine(backend, None, EngineOptions(progress=False)).run(reqs)
        assert result.skipped == {reqs[0].hash} and result.stats.skipped == 1
        assert set(result.responses) == {reqs[1].hash}
        return
    got = backend.score([ScoringGroup(ctx, (cont,)), ScoringGroup(mc_ctx, ((5,), (9,)))])
    for g, w in zip(got, want, strict=True):
        for x, y in zip(g, w, strict=True):
            assert abs(x.logprob - y.logprob) < TOL and x.token_greedy == y.token_greedy
    # Nothing beyond the window was fed: the engine holds window + the sampled token.
    assert backend.llm.engine_args["max_model_len"] == 513
    assert max(len(p["prompt_token_ids"]) for p in backend.llm.prompts_seen) <= 512


def test_a_rejected_request_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from evalkit.errors import EvalkitError

    _inject(monkeypatch, "new")
    backend = _vllm(trace_replay="off")
    too_long = tuple(range(3, 3 + 600))
    with pytest.raises(EvalkitError, match="vLLM rejected a request: The decoder prompt"):
        backend.score([ScoringGroup(too_long, ((5,),))])
    with pytest.raises(EvalkitError, match="vLLM rejected a request"):
        backend.generate([GenerationJob((3, 4), ("",), 4, 0.0, 2, 0)])  # n=2 greedy


def test_vllm_options_parse_and_fail_in_one_line() -> None:
    from evalkit.backends.vllm_options import VLLMOptions, parse_options
    from evalkit.errors import EvalkitError

    opts = parse_options(
        [
            "tensor_parallel_size=4",
            "gpu-memory-utilization=0.85",
            "max_model_len=none",
            "enable_prefix_caching=false",
        ],
        dtype="bfloat16",
    )
    assert opts == VLLMOptions(
        tensor_parallel_size=4,
        gpu_memory_utilization=0.85,
        max_model_len=None,
        enable_prefix_caching=False,
        dtype="bfloat16",
    )
    for bad in ("nope=1", "tensor_parallel_size", "tensor_parallel_size=two"):
        with pytest.raises(EvalkitError):
            parse_options([bad])


def test_cli_scores_through_vllm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from evalkit.cli import app

    _inject(monkeypatch, "new")
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["score", str(TINY_BASE), "--suite", "smoke", "--limit", "1", "--backend", "vllm"]
    args += ["--no-cache", "--no-progress", "--out", str(out)]
    res = runner.invoke(app, [*args, "--vllm-option", "max_model_len=256"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "vllm"
    assert manifest["backend_settings"]["max_length"] == "512"
    assert manifest["backend_settings"]["feed_limit"] == "256"
    assert manifest["engine"]["skipped"] == sum(t["skipped_items"] for t in manifest["tasks"])
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "r2"), "--vllm-option", "nope=1"])
    assert bad.exit_code == 2 and "bad vLLM option" in bad.output


def test_many_choices_are_split_under_the_logprob_caps(
    monkeypatch: pytest.MonkeyPatch, hf: HFBackend
) -> None:
    _inject(monkeypatch, "new")
    backend = _vllm()
    ctx = tuple(backend.tokenizer.encode("Pick a token:"))
    choices = tuple((t,) for t in range(3, 153))  # 150 one-token answers
    got = backend.score([ScoringGroup(ctx, choices)])[0]
    params = backend.llm.calls[-1]
    assert [len(p.logprob_token_ids) for p in params] == [128, 22]
    want = hf.score([ScoringGroup(ctx, choices)])[0]
    for x, y in zip(got, want, strict=True):
        assert abs(x.logprob - y.logprob) < TOL and x.is_greedy == y.is_greedy


def test_a_sweep_job_on_the_cpu_engine_asks_for_no_gpu() -> None:
    from evalkit.sweep import default_gpus

    assert default_gpus("vllm", "cpu") == 0.0
    assert default_gpus("vllm", "auto") == 1.0 and default_gpus("hf", "cuda") == 1.0
    assert default_gpus("hf", "cpu") == 0.0
