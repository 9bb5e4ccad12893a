"""Engine behaviour on the fake backend: dedup, grouping, batching, cache, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.backends.fake import FakeBackend
from evalkit.batching import scoring_batches, scoring_groups
from evalkit.cache import ResultCache
from evalkit.encoding import rolling_windows
from evalkit.engine import Engine, EngineOptions
from evalkit.errors import ContextTooLongError, DamagedModelError
from evalkit.requests import (
    Generate,
    GenerateResult,
    Loglikelihood,
    LoglikelihoodResult,
    RollingLoglikelihood,
    RollingResult,
)

QUIET = EngineOptions(progress=False)


def test_duplicates_across_tasks_run_once_and_shared_contexts_group() -> None:
    seen: list[tuple[str, str]] = []

    def score(ctx: str, cont: str) -> float:
        seen.append((ctx, cont))
        return -float(len(cont))

    backend = FakeBackend(score)
    task_a = [Loglikelihood("Q: 1+1=", " 2"), Loglikelihood("Q: 1+1=", " 3")]
    task_b = [Loglikelihood("Q: 1+1=", " 2"), Loglikelihood("Other", " x")]
    result = Engine(backend, options=QUIET).run(task_a + task_b)
    assert result.stats.requests == 4
    assert result.stats.unique == 3
    assert sorted(seen) == sorted([("Q: 1+1=", " 2"), ("Q: 1+1=", " 3"), ("Other", " x")])
    r = result.responses[task_a[0].hash]
    assert isinstance(r, LoglikelihoodResult) and r.logprob == -2.0 and r.n_tokens == 2


def test_trailing_context_spaces_move_into_the_continuation() -> None:
    seen: list[tuple[str, str]] = []
    backend = FakeBackend(lambda c, k: seen.append((c, k)) or -1.0)  # type: ignore[func-returns-value]
    Engine(backend, options=QUIET).run([Loglikelihood("Answer: ", "yes")])
    assert seen == [("Answer:", " yes")]


def test_empty_context_conditions_on_the_prefix_token() -> None:
    backend = FakeBackend(lambda c, k: -1.0)
    eng = Engine(backend, options=QUIET)
    ctx, cont = eng._encoder.pair("", "abc")
    assert ctx == (backend.tokenizer.prefix_token_id,)
    assert backend.tokenizer.decode(cont) == "abc"


def test_batches_respect_the_token_budget_longest_first() -> None:
    backend = FakeBackend(lambda c, k: -1.0, token_budget=64)
    reqs = [Loglikelihood("x" * n, " y") for n in (5, 40, 10, 20, 30)]
    eng = Engine(backend, options=QUIET)
    groups = scoring_groups(eng.units(reqs), backend.token_budget, backend.max_length)
    lengths = [g.packed_length for g in groups]
    assert lengths == sorted(lengths, reverse=True)
    for batch in scoring_batches(groups, backend.token_budget):
        assert len(batch) * batch[0].packed_length <= 64 or len(batch) == 1
    eng.run(reqs)
    assert sum(backend.score_calls) == 5 and len(backend.score_calls) > 1


def test_results_come_back_for_every_request_in_any_order() -> None:
    backend = FakeBackend()
    reqs = [Loglikelihood(f"c{i % 3}", f" k{i}") for i in range(20)]
    res = Engine(backend, options=QUIET).run(reqs)
    again = Engine(FakeBackend(), options=QUIET).run(list(reversed(reqs)))
    for r in reqs:
        assert res.responses[r.hash] == again.responses[r.hash]


def test_cache_makes_a_second_run_reuse_everything(tmp_path: Path) -> None:
    reqs = [
        Loglikelihood("a", " b"),
        RollingLoglikelihood("some text"),
        Generate("p", max_tokens=4),
    ]
    cache = ResultCache(tmp_path / "c.sqlite")
    first = FakeBackend(generate_fn=lambda p, i: "out")
    r1 = Engine(first, cache, QUIET).run(reqs)
    assert r1.stats.reused == 0 and r1.stats.computed == 3
    second = FakeBackend(generate_fn=lambda p, i: "out")
    r2 = Engine(second, cache, QUIET).run(reqs)
    assert r2.stats.reused == 3 and r2.stats.computed == 0
    assert second.score_calls == [] and second.generate_calls == []
    assert r1.responses == r2.responses
    # Another model never sees these results.
    other = FakeBackend(fingerprint="another-model")
    assert Engine(other, cache, QUIET).run(reqs).stats.reused == 0


def test_too_long_is_an_error_before_any_work_by_default() -> None:
    backend = FakeBackend(max_length=16)
    reqs = [Loglikelihood("short", " a"), Loglikelihood("x" * 40, " y")]
    with pytest.raises(ContextTooLongError, match="window is 16"):
        Engine(backend, options=QUIET).run(reqs)
    assert backend.score_calls == []


def test_left_truncation_keeps_the_newest_tokens_and_counts() -> None:
    seen: list[str] = []
    backend = FakeBackend(lambda c, k: seen.append(c) or -1.0, max_length=16)  # type: ignore[func-returns-value]
    long = Loglikelihood("0123456789abcdefghij", " y")
    res = Engine(backend, options=EngineOptions(truncation="left", progress=False)).run(
        [long, Loglikelihood("ok", " z")]
    )
    assert res.stats.truncated == 1 and res.truncated == {long.hash}
    # context + continuation - 1 == window: 15 context bytes survive.
    assert "56789abcdefghij" in seen


def test_rolling_text_is_split_into_windows_and_summed() -> None:
    backend = FakeBackend(lambda c, k: -float(len(k)), max_length=8)
    text = "abcdefghijklmnopqrstu"  # 21 bytes: windows of 8, 8, 5
    res = Engine(backend, options=QUIET).run([RollingLoglikelihood(text)])
    r = res.responses[RollingLoglikelihood(text).hash]
    assert isinstance(r, RollingResult)
    assert r.n_tokens == 21 and r.logprob == -21.0


def test_rolling_windows_match_lm_eval() -> None:
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    for n_tokens in (0, 1, 5, 8, 9, 16, 17, 40):
        for window in (1, 2, 8, 16):
            tokens = list(range(10, 10 + n_tokens))
            ours = rolling_windows(tokens, 0, window)
            ref = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(tokens, 0, window, context_len=1)
            ]
            assert [(list(a), list(b)) for a, b in ours] == [(a, b) for a, b in ref]


def test_generation_results_and_stop_sequences() -> None:
    backend = FakeBackend(generate_fn=lambda p, i: f"{p[-1]}!\nmore")
    reqs = [Generate("ab", stop=("\n",), max_tokens=4), Generate("cd", max_tokens=4)]
    res = Engine(backend, options=QUIET).run(reqs)
    assert res.responses[reqs[0].hash] == GenerateResult(("b!",))
    assert res.responses[reqs[1].hash] == GenerateResult(("d!\nmore",))


def test_a_nan_log_likelihood_is_an_error() -> None:
    backend = FakeBackend(lambda c, k: float("nan"))
    with pytest.raises(DamagedModelError, match="NaN"):
        Engine(backend, options=QUIET).run([Loglikelihood("a", " b")])


def test_token_logprobs_from_ids_and_from_text() -> None:
    from evalkit.requests import TokenLogprobs, TokenLogprobsResult

    # A scripted copier: certain of a token it has seen before, lost otherwise.
    def token_fn(prefix: tuple[int, ...], token: int) -> tuple[float, bool]:
        return (0.0, True) if token in prefix else (-5.0, False)

    backend = FakeBackend(token_fn=token_fn)
    ids = TokenLogprobs(tokens=(0, 10, 11, 10, 11))
    text = TokenLogprobs(text="abab")
    res = Engine(backend, options=QUIET).run([ids, text])
    assert res.responses[ids.hash] == TokenLogprobsResult(
        (-5.0, -5.0, 0.0, 0.0), (False, False, True, True)
    )
    r = res.responses[text.hash]
    assert isinstance(r, TokenLogprobsResult) and r.logprobs == (-5.0, -5.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        TokenLogprobs(text="a", tokens=(1, 2))
    with pytest.raises(ContextTooLongError):
        Engine(FakeBackend(max_length=3), options=QUIET).run([ids])


def test_token_logprobs_survive_the_cache(tmp_path: Path) -> None:
    from evalkit.requests import TokenLogprobs

    req = TokenLogprobs(tokens=(0, 5, 6))
    cache = ResultCache(tmp_path / "c.sqlite")
    first = Engine(FakeBackend(), cache, QUIET).run([req])
    second = Engine(FakeBackend(), cache, QUIET).run([req])
    assert second.stats.reused == 1 and first.responses == second.responses


class _OnePass(FakeBackend):
    """The fake backend taking scoring and generation together (as vLLM's does), dying on
    its second wave: what a killed one-pass run leaves in the cache."""

    waves = 0

    def score_and_generate(self, groups, jobs):  # type: ignore[no-untyped-def]
        self.waves += 1
        if self.waves == 2:
            raise KeyboardInterrupt
        return self.score(groups), self.generate(jobs)


def test_a_killed_one_pass_run_keeps_each_finished_wave_generations(tmp_path: Path) -> None:
    # A small budget: several waves of scoring and of generation.
    reqs = [Generate(f"prompt {i} " * 4, max_tokens=8) for i in range(6)]
    reqs += [Loglikelihood(f"context {i} " * 4, " x") for i in range(6)]
    cache = ResultCache(tmp_path / "c.sqlite")
    backend = _OnePass(generate_fn=lambda p, i: "out", token_budget=40)
    with pytest.raises(KeyboardInterrupt):
        Engine(backend, cache, QUIET).run(reqs)
    assert backend.waves == 2 and len(backend.generate_calls) == 1
    first_wave = backend.generate_calls[0]
    assert 0 < first_wave < 6
    again = Engine(FakeBackend(generate_fn=lambda p, i: "out", token_budget=40), cache, QUIET)
    result = again.run(reqs)
    generated_before = sum(1 for r in reqs[:6] if result.responses[r.hash].texts == ("out",))
    assert generated_before == 6
    # The first wave's scores and generations were both kept.
    assert result.stats.reused >= first_wave + 1
