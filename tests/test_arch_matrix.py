"""Every architecture in the matrix scores as the model's own plain forward, or refuses loudly.

Per architecture (tiny random instance, tests/arch_models.py): multiple choice with contexts
longer than every sliding window, the same behind a shared preamble (cross-context prefix
reuse), rolling log-likelihood over texts longer than the window (several rolling windows,
packed rows capped at the window), and greedy generation — all through the engine, against
the model's own unpacked forward (eager attention) and `generate` on one sequence at a time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from arch_models import ARCHS, SLIDE, WINDOW, build

from evalkit.backends.hf import HFBackend
from evalkit.backends.hf_generate import cut_at_stop
from evalkit.encoding import Encoder, rolling_windows
from evalkit.engine import Engine, EngineOptions
from evalkit.errors import EvalkitError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    Request,
    RollingLoglikelihood,
    RollingResult,
)

TOL = 1e-4

# The path each architecture must take (recorded as backend setting `path`).
EXPECTED_PATH = {name: "packed" for name in ARCHS} | {
    "llama-native": "native",
    "llama-tied": "native",
    "bloom-alibi": "unpacked",
    "falcon-alibi": "unpacked",
}
# Unpacked rows run a group's context once and reuse its KV cache (backends/kv_reuse.py).
EXPECTED_KV_REUSE = {"bloom-alibi": "per group", "falcon-alibi": "per group"}
WORDS = [
    "the",
    "a",
    "fox",
    "dog",
    "runs",
    "jumps",
    "over",
    "under",
    "blue",
    "red",
    "seven",
    "three",
    "apple",
    "river",
    "stone",
    "cloud",
    "quick",
    "lazy",
    "green",
    "small",
    "large",
    "old",
    "new",
    "light",
    "dark",
    "north",
    "south",
]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _requests() -> list[Request]:
    rng = random.Random(0)
    endings = (" apple", " river stone", " seven three blue", " dark")
    out: list[Request] = []
    for _ in range(2):  # contexts well past the sliding window
        ctx = _text(rng, 45) + "."
        out += [Loglikelihood(ctx, e) for e in endings]
    # A short context too: batches mix rows below and above a length-dependent RoPE's switch.
    out += [Loglikelihood(_text(rng, 8) + ":", e) for e in endings]
    preamble = _text(rng, 30) + ".\n"
    for _ in range(3):  # a shared preamble of 32+ tokens: prefix reuse across contexts
        ctx = preamble + _text(rng, 6) + ":"
        out += [Loglikelihood(ctx, e) for e in endings]
    out += [RollingLoglikelihood(_text(rng, 160)) for _ in range(2)]
    out += [Generate(_text(rng, 40), stop=("\n",), max_tokens=6) for _ in range(2)]
    return out


def _plain_logprob(model: Any, ctx: tuple[int, ...], cont: tuple[int, ...]) -> float:
    ids = torch.tensor([(list(ctx) + list(cont))[:-1]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(logprobs[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


def _plain_generate(model: Any, backend: HFBackend, req: Generate) -> str:
    tok = backend.tokenizer
    prompt = tok.encode(req.prompt)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=req.max_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    new = out[0, len(prompt) :].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    return cut_at_stop(tok.decode(new), req.stop)


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, tuple[Path, Any]]]:
    # Hidden-32 models: one thread is faster than several fighting for two busy cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {}
    torch.set_num_threads(threads)


def _get(built: dict[str, tuple[Path, Any]], tmp: pytest.TempPathFactory, name: str) -> Any:
    if name not in built:
        built[name] = build(name, tmp.mktemp(name))
    return built[name]


@pytest.mark.parametrize("name", ARCHS)
def test_scores_equal_the_model_own_plain_forward(
    name: str, built: dict[str, tuple[Path, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    path, model = _get(built, tmp_path_factory, name)
    # ALiBi models state no window: give every model the same one.
    backend = HFBackend(path, device="cpu", dtype="float32", max_length=WINDOW)
    assert backend.settings["path"] == EXPECTED_PATH[name]
    assert backend.settings.get("kv_reuse") == EXPECTED_KV_REUSE.get(name)
    requests = _requests()
    result = Engine(backend, None, EngineOptions(progress=False)).run(requests)
    enc = Encoder(backend.tokenizer)
    worst = 0.0
    longest = 0
    for req in requests:
        got = result.responses[req.hash]
        if isinstance(req, Loglikelihood):
            assert isinstance(got, LoglikelihoodResult)
            ctx, cont = enc.pair(req.context, req.continuation)
            longest = max(longest, len(ctx))
            worst = max(worst, abs(got.logprob - _plain_logprob(model, ctx, cont)))
        elif isinstance(req, RollingLoglikelihood):
            assert isinstance(got, RollingResult)
            units = rolling_windows(enc.encode(req.text), enc.tokenizer.prefix_token_id, WINDOW)
            assert len(units) > 1
            want = sum(_plain_logprob(model, c, t) for c, t in units)
            worst = max(worst, abs(got.logprob - want))
        else:
            assert isinstance(req, Generate) and isinstance(got, GenerateResult)
            assert got.texts == (_plain_generate(model, backend, req),), name
    assert longest > 2 * SLIDE
    assert worst < TOL, f"{name}: {worst:.3g} nats off the plain forward"
    report = backend.guard_report
    assert report["status"] == "passed" and report["groups"] == 8, report


def test_the_guard_stops_a_wrong_fast_path(
    built: dict[str, tuple[Path, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Negative control: a packed path that forgets the sliding window must be caught."""
    import dataclasses

    path, _ = _get(built, tmp_path_factory, "mistral-sliding")
    backend = HFBackend(path, device="cpu", dtype="float32")
    backend.plan = dataclasses.replace(backend.plan, windows={"all": None})
    with pytest.raises(EvalkitError, match=r"parity guard: mistral on the packed path"):
        Engine(backend, None, EngineOptions(progress=False)).run(_requests())
    off = HFBackend(path, device="cpu", dtype="float32", guard=False)
    off.plan = dataclasses.replace(off.plan, windows={"all": None})
    Engine(off, None, EngineOptions(progress=False)).run(_requests())
    assert off.guard_report["status"] == "off (--no-guard)"


@pytest.mark.parametrize("name", ["gemma2", "bloom-alibi"])
def test_smoke_suite_runs_with_the_guard_and_records_the_path(
    name: str,
    built: dict[str, tuple[Path, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    import evalkit

    path, _ = _get(built, tmp_path_factory, name)
    run = evalkit.score(
        path,
        suite="smoke",
        limit=2,
        backend="hf",
        device="cpu",
        use_cache=False,
        progress=False,
        out=tmp_path / "run",
    )
    guard = run.manifest["parity_guard"]
    assert guard["status"] == "passed" and guard["path"] == EXPECTED_PATH[name]
    assert run.manifest["backend_settings"]["path"] == EXPECTED_PATH[name]


def _unpacked_groups() -> list[Any]:
    from evalkit.backends.base import ScoringGroup

    return [
        ScoringGroup(tuple(range(3, 120)), ((5, 6, 7), (8,), (9, 10), (11, 12, 13, 14, 15))),
        ScoringGroup(tuple(range(40, 70)), ((5,), (8,))),  # one-token choices: no second pass
        ScoringGroup(tuple(range(7, 30)), ((6, 5, 4, 3, 2, 1),)),  # alone: plain row
    ]


@pytest.mark.parametrize("name", ["bloom-alibi", "falcon-alibi"])
def test_kv_reuse_equals_one_row_per_continuation(
    name: str,
    built: dict[str, tuple[Path, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reused cache (also split into chunks by a small token budget, which copies it)
    against the model's own forward of each (context, continuation); and a negative control:
    a cache of the wrong context is caught by the same comparison."""
    path, model = _get(built, tmp_path_factory, name)
    groups = _unpacked_groups()
    for budget in (4096, 130):  # 130: one continuation row per pass, the cache deep-copied
        backend = HFBackend(path, device="cpu", dtype="float32", token_budget=budget)
        assert backend.plan.kv_reuse == "per group"
        with torch.inference_mode():
            got = backend.score(groups)
        for group, scores in zip(groups, got, strict=True):
            for cont, score in zip(group.continuations, scores, strict=True):
                assert abs(score.logprob - _plain_logprob(model, group.context, cont)) < TOL

    from evalkit.backends import hf_unpacked

    right = hf_unpacked.context_pass
    # Negative control: a context pass over the wrong tokens must be caught.
    monkeypatch.setattr(
        hf_unpacked, "context_pass", lambda fw, ctx: right(fw, (ctx[0] + 1, *ctx[1:]))
    )
    with torch.inference_mode():
        wrong = hf_unpacked.score_unpacked(backend.forward, groups[:1])[0]
    worst = max(
        abs(s.logprob - _plain_logprob(model, groups[0].context, c))
        for c, s in zip(groups[0].continuations, wrong, strict=True)
    )
    assert worst > 100 * TOL


def test_a_cache_that_drops_context_tokens_is_not_reused(
    built: dict[str, tuple[Path, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Sliding-window caches keep only the window's tail: the probe refuses them (so an
    unknown sliding architecture scores one row per continuation); a full cache passes."""
    from evalkit.backends import kv_reuse

    sliding, _ = _get(built, tmp_path_factory, "mistral-sliding")
    backend = HFBackend(sliding, device="cpu", dtype="float32")
    verdict = kv_reuse.probe(backend.forward.decoder, backend.device, 2)
    assert verdict.startswith("off (cache layers ['DynamicSlidingWindowLayer']"), verdict
    plain, _ = _get(built, tmp_path_factory, "gpt-neox")
    backend = HFBackend(plain, device="cpu", dtype="float32")
    assert kv_reuse.probe(backend.forward.decoder, backend.device, 2) == kv_reuse.ON
    assert "kv_reuse" not in backend.settings  # packed: the setting is the unpacked path's


@pytest.mark.parametrize("name", ["llama-rope-longrope", "phi3-longrope", "llama-rope-dynamic"])
def test_length_dependent_rope_rows_score_as_their_own_forward(
    name: str, built: dict[str, tuple[Path, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A batch mixing a row past the original length (64) with a short one: the short row
    must not get the long row's frequencies (longrope switches on the batch's largest
    position), and padding must not reach past the window (dynamic)."""
    from evalkit.backends.base import ScoringGroup

    path, model = _get(built, tmp_path_factory, name)
    backend = HFBackend(path, device="cpu", dtype="float32")
    groups = [
        ScoringGroup(tuple(range(3, 200)), ((5, 6), (7,), (8, 9, 10))),
        ScoringGroup(tuple(range(3, 12)), ((12,), (5, 6))),
    ]
    for group, scores in zip(groups, backend.score(groups), strict=True):
        for cont, score in zip(group.continuations, scores, strict=True):
            assert abs(score.logprob - _plain_logprob(model, group.context, cont)) < TOL
