"""The HF backend's packed, gathered scoring equals plain forwards; generation honours stops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evalkit.backends.base import GenerationJob, ScoringGroup
from evalkit.backends.hf import HFBackend
from evalkit.backends.hf_generate import cut_at_stop
from evalkit.errors import EvalkitError


@pytest.fixture(scope="module")
def backend(random_ckpt: Path) -> HFBackend:
    return HFBackend(random_ckpt, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(random_ckpt: Path) -> torch.nn.Module:
    """transformers' own model of the checkpoint: what the backend must agree with."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(random_ckpt, dtype=torch.float32).eval()


def _reference(model: torch.nn.Module, context: tuple[int, ...], cont: tuple[int, ...]):
    ids = torch.tensor([list(context) + list(cont)])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    rows = range(len(context) - 1, len(context) + len(cont) - 1)
    lp = sum(logprobs[r, t].item() for r, t in zip(rows, cont, strict=True))
    greedy = all(logprobs[r].argmax().item() == t for r, t in zip(rows, cont, strict=True))
    return lp, greedy


def test_tree_packed_groups_equal_separate_forwards(
    backend: HFBackend, reference: torch.nn.Module
) -> None:
    tok = backend.tokenizer
    ctx = tuple(tok.encode("Question: is the fox quick? Answer:"))
    conts = [tuple(tok.encode(t)) for t in (" yes it is", " no", " maybe 1 + 2 = 3", "!")]
    groups = [
        ScoringGroup(ctx, tuple(conts)),
        ScoringGroup(ctx[:4], (conts[1], conts[3])),  # shorter row: padding in the batch
        ScoringGroup(tuple(tok.encode("def add(x):")), (conts[2],)),
    ]
    results = backend.score(groups)
    for group, scores in zip(groups, results, strict=True):
        for cont, score in zip(group.continuations, scores, strict=True):
            lp, greedy = _reference(reference, group.context, cont)
            assert score.logprob == pytest.approx(lp, abs=1e-4)
            assert score.is_greedy == greedy
            assert score.n_tokens == len(cont)


def test_one_token_continuations_take_the_plain_causal_path(
    backend: HFBackend, reference: torch.nn.Module
) -> None:
    tok = backend.tokenizer
    ctx = tuple(tok.encode("1 + 2 ="))
    conts = tuple((t,) for t in tok.encode(" 3 4 5")[:3])
    (scores,) = backend.score([ScoringGroup(ctx, conts)])
    for cont, s in zip(conts, scores, strict=True):
        lp, greedy = _reference(reference, ctx, cont)
        assert s.logprob == pytest.approx(lp, abs=1e-5) and s.is_greedy == greedy


def test_greedy_flag_is_true_for_the_model_own_greedy_continuation(
    backend: HFBackend, reference: torch.nn.Module
) -> None:
    ctx = tuple(backend.tokenizer.encode("The quick brown"))
    ids = torch.tensor([list(ctx)])
    with torch.no_grad():
        nxt = int(reference(ids).logits[0, -1].argmax())
    (scores,) = backend.score([ScoringGroup(ctx, ((nxt,),))])
    assert scores[0].is_greedy


def test_greedy_generation_matches_step_by_step_argmax(
    backend: HFBackend, reference: torch.nn.Module
) -> None:
    prompt = tuple(backend.tokenizer.encode("1 + 2 ="))
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(reference(torch.tensor([ids])).logits[0, -1].argmax()))
    expected = backend.tokenizer.decode(ids[len(prompt) :])
    other = tuple(backend.tokenizer.encode("The quick brown fox jumps"))
    job = GenerationJob(prompt=prompt, stop=(), max_tokens=6, temperature=0.0, n=1, seed=0)
    job2 = GenerationJob(prompt=other, stop=(), max_tokens=6, temperature=0.0, n=1, seed=0)
    out = backend.generate([job, job2])  # batched with left padding
    assert out[0] == (expected,)


def test_sampling_is_reproducible_per_seed(backend: HFBackend) -> None:
    prompt = tuple(backend.tokenizer.encode("The"))
    job = GenerationJob(prompt=prompt, stop=(), max_tokens=5, temperature=1.0, n=3, seed=11)
    a = backend.generate([job])
    b = backend.generate([job])
    assert a == b and len(a[0]) == 3


def test_cut_at_stop_keeps_text_before_the_earliest_stop() -> None:
    assert cut_at_stop("12\n34.", ["\n", "."]) == "12"
    assert cut_at_stop("12.34\n", ["\n", "."]) == "12"
    assert cut_at_stop("abc", []) == "abc"


def test_bad_checkpoints_are_one_line_errors(tmp_path: Path, random_ckpt: Path) -> None:
    with pytest.raises(EvalkitError, match="not found"):
        HFBackend(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalkitError, match=r"config\.json"):
        HFBackend(empty)


def test_per_token_scores_sum_to_the_total(backend: HFBackend) -> None:
    ctx = tuple(backend.tokenizer.encode("The quick"))
    cont = tuple(backend.tokenizer.encode(" brown fox jumps"))
    (scores,) = backend.score([ScoringGroup(ctx, (cont,))])
    s = scores[0]
    assert len(s.token_logprobs) == len(cont) == len(s.token_greedy)
    assert sum(s.token_logprobs) == pytest.approx(s.logprob, abs=1e-9)
    assert s.is_greedy == all(s.token_greedy)


def test_a_preamble_shared_across_contexts_is_computed_once_with_equal_results(
    random_ckpt: Path,
) -> None:
    reuse = HFBackend(random_ckpt, device="cpu", dtype="float32")
    plain = HFBackend(random_ckpt, device="cpu", dtype="float32", prefix_reuse=False)
    tok = reuse.tokenizer
    preamble = tuple(tok.encode("The quick brown fox jumps over the lazy dog. " * 4))
    assert len(preamble) > 40
    questions = ["1 + 2 =", "4 + 5 =", "Question: is it?", "def add(x):"]
    conts = tuple(tuple(tok.encode(t)) for t in (" 3", " yes it is", " no"))
    batches = [
        [ScoringGroup(preamble + tuple(tok.encode(q)), conts) for q in questions[:3]],
        [ScoringGroup(preamble + tuple(tok.encode(questions[3])), conts)],  # reuses the cache
        [ScoringGroup(preamble[:10] + tuple(tok.encode(q)), ((5,), (6,))) for q in questions],
    ]
    for batch in batches:
        for a, b in zip(reuse.score(batch), plain.score(batch), strict=True):
            for x, y in zip(a, b, strict=True):
                assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
                assert x.is_greedy == y.is_greedy
    assert reuse.forward.prefix is not None
    assert len(reuse.forward.prefix[0]) >= len(preamble)


def test_gpu_token_budget_follows_free_memory(
    backend: HFBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA budget comes from torch.cuda.mem_get_info (mocked here: no GPU)."""
    from evalkit.backends import hf

    free = {"bytes": 64 << 20}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 << 30))
    monkeypatch.setattr(backend, "device", torch.device("cuda"))
    cfg = backend.model.config
    want = hf.gpu_token_budget(
        64 << 20,
        hidden=cfg.hidden_size,
        intermediate=cfg.intermediate_size,
        dtype_bytes=4,
        window=backend.max_length,
    )
    assert backend._default_budget() == want
    free["bytes"] = 16 << 20
    small = backend._default_budget()
    assert hf.MIN_BUDGET <= small < want  # less free memory, smaller batches
    free["bytes"] = 1 << 20
    assert backend._default_budget() == hf.MIN_BUDGET
    free["bytes"] = 1 << 50
    assert backend._default_budget() == hf.MAX_BUDGET
    # A 1.1B TinyLlama shape in bf16 with ~60 GiB free: a large batch, not a constant.
    big = hf.gpu_token_budget(60 << 30, hidden=2048, intermediate=5632, dtype_bytes=2, window=2048)
    assert 100_000 < big <= hf.MAX_BUDGET
    monkeypatch.setattr(backend, "device", torch.device("cpu"))
    assert backend._default_budget() == 4096  # CPU behaviour unchanged


def test_a_stored_preamble_longer_than_the_batch_prefix_is_cropped(random_ckpt: Path) -> None:
    reuse = HFBackend(random_ckpt, device="cpu", dtype="float32")
    plain = HFBackend(random_ckpt, device="cpu", dtype="float32", prefix_reuse=False)
    tok = reuse.tokenizer
    preamble = tuple(tok.encode("The quick brown fox jumps over the lazy dog. " * 4))
    conts = tuple(tuple(tok.encode(t)) for t in (" 3", " yes it is"))
    first = [ScoringGroup(preamble + tuple(tok.encode(q)), conts) for q in ("1 + 2 =", "4 + 5 =")]
    # Shares only 36 tokens with the stored preamble: the cache must be cut back to them.
    second = [ScoringGroup(preamble[:36] + tuple(tok.encode(q)), conts) for q in ("a b", "c d")]
    for batch in (first, second):
        for a, b in zip(reuse.score(batch), plain.score(batch), strict=True):
            for x, y in zip(a, b, strict=True):
                assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
    assert reuse.forward.prefix is not None and len(reuse.forward.prefix[0]) > 36
