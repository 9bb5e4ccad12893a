"""Probe definitions checked on the fake backend with known log-likelihoods."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from evalkit import metrics as M
from evalkit.aggregate import family_scores, language_scores, summary_scores, task_scores
from evalkit.backends.fake import ByteTokenizer, FakeBackend
from evalkit.engine import Engine, EngineOptions
from evalkit.errors import EvalkitError
from evalkit.requests import TokenLogprobs
from evalkit.tasks.base import ItemResult, MetricSpec, WindowedTokenizer, responses_for
from evalkit.tasks.probes.common import ProbeSpec, ols_slope
from evalkit.tasks.probes.fewshot import FewShotCurveTask
from evalkit.tasks.probes.labels import LabelProbeTask
from evalkit.tasks.probes.registry import load_probe_spec, make_probe
from evalkit.tasks.probes.token_level import (
    InductionTask,
    OlssonTask,
    induction_metrics,
    olsson_positions,
)

TOK = ByteTokenizer()


def spec(probe: str, **params: object) -> ProbeSpec:
    return ProbeSpec("t", "icl", "1", probe, Path("t.yaml"), params=params)


def run(task, backend: FakeBackend, limit=None):  # type: ignore[no-untyped-def]
    items = task.items(limit, backend.tokenizer)
    engine = Engine(backend, None, EngineOptions(progress=False))
    res = engine.run([r for it in items for r in it.requests])
    return items, task.score(items, [responses_for(it, res.responses) for it in items])


# -- DataDecide metrics ------------------------------------------------------------------------


def test_datadecide_metrics_by_hand() -> None:
    lls = [-2.0, -1.0, -4.0]
    choices = ["a", "bbbb", "cc"]
    v = M.multiple_choice(lls, choices, gold=1)
    assert v["margin"] == pytest.approx(-1.0 - (-2.0))
    assert v["prob_correct"] == pytest.approx(math.exp(-1.0))
    per_char = [-2.0, -0.25, -2.0]
    assert v["margin_char"] == pytest.approx(-0.25 - (-2.0))
    assert v["p_correct_char"] == pytest.approx(
        math.exp(-0.25) / sum(math.exp(x) for x in per_char)
    )
    assert M.multiple_choice(lls, choices, gold=0)["margin"] == pytest.approx(-1.0)


# -- induction ---------------------------------------------------------------------------------


def test_induction_metrics_by_hand() -> None:
    # r = 3 tokens: predictions [r1 r2 r3 | r1 r2 r3]; scored: positions 1,2 and 4,5.
    lps = [-9.0, -6.0, -4.0, -8.0, -1.0, -0.5]
    greedy = [False, False, True, False, True, True]
    v = induction_metrics(lps, greedy, 3)
    assert v["first_loss"] == pytest.approx(5.0)
    assert v["copy_loss"] == pytest.approx(0.75)
    assert v["induction_gain"] == pytest.approx(4.25)
    assert v["first_acc"] == 0.5 and v["copy_acc"] == 1.0


def test_induction_task_items_and_score_on_fake_backend() -> None:
    task = InductionTask(spec("induction", n=6, seed=3, min_len=50, max_len=100))
    items = task.items(None, TOK)
    for it in items:
        (req,) = it.requests
        assert isinstance(req, TokenLogprobs) and req.tokens is not None
        length = dict(it.tags)["length"]
        assert 50 <= length <= 100
        r = req.tokens[1 : 1 + length]
        assert req.tokens == (TOK.prefix_token_id, *r, *r)
        assert all(t >= 3 for t in r)  # specials never drawn

    # A perfect copier: a token seen before costs 0.1 nats and is greedy, else 5 nats.
    def token_fn(ctx: tuple[int, ...], tok: int) -> tuple[float, bool]:
        seen = tok in ctx[1:]
        return (-0.1, True) if seen else (-5.0, False)

    _, results = run(task, FakeBackend(token_fn=token_fn))
    for it, res in zip(items, results, strict=True):
        (req,) = it.requests
        assert req.tokens is not None
        length = dict(it.tags)["length"]
        r = req.tokens[1 : 1 + length]
        # By hand: first copy positions 2..L cost 5 unless the token repeats earlier in r.
        first = [(-0.1 if r[j] in r[:j] else -5.0) for j in range(1, length)]
        assert res.metrics["first_loss"] == pytest.approx(-sum(first) / (length - 1))
        assert res.metrics["copy_loss"] == pytest.approx(0.1)
        assert res.metrics["copy_acc"] == 1.0
    with pytest.raises(EvalkitError, match="needs the model's tokenizer"):
        task.items(None, None)


# -- Olsson ------------------------------------------------------------------------------------


def test_olsson_score_by_hand() -> None:
    task = OlssonTask(
        spec("olsson", docs={"generator": "long_story", "seed": 1, "n": 3}, early=50, late=500)
    )

    # Loss of document token i (1-based) = i / 100 nats: the score is (500 - 50) / 100 = 4.5.
    def token_fn(ctx: tuple[int, ...], tok: int) -> tuple[float, bool]:
        return -len(ctx) / 100, False

    items, results = run(task, FakeBackend(token_fn=token_fn))
    for it, res in zip(items, results, strict=True):
        (req,) = it.requests
        assert isinstance(req, TokenLogprobs) and req.tokens is not None
        assert len(req.tokens) == 501 and req.tokens[0] == TOK.prefix_token_id
        assert res.metrics["loss_early"] == pytest.approx(0.5)
        assert res.metrics["loss_late"] == pytest.approx(5.0)
        assert res.metrics["icl_score"] == pytest.approx(4.5)


def test_olsson_positions_scale_for_short_windows() -> None:
    assert olsson_positions(50, 500, 512) == (50, 500)
    assert olsson_positions(50, 500, 501) == (50, 500)
    assert olsson_positions(50, 500, 257) == (25, 256)
    assert olsson_positions(50, 500, 129) == (12, 128)


# -- few-shot curve ----------------------------------------------------------------------------

CURVE = dict(
    docs={"generator": "addition_mc", "seed": 5, "n": 60},
    prompt="{a} + {b} =",
    separator="\n",
    ks=[0, 1, 2, 4, 8, 16, 32],
    seeds=5,
    n_test=6,
    max_context_tokens=10_000,
)


def test_fewshot_curve_items() -> None:
    task = FewShotCurveTask(spec("fewshot_curve", **CURVE))
    items = task.items(None, TOK)
    docs = task.docs()
    test_prompts = {f"{docs[i]['a']} + {docs[i]['b']} =" for i in range(6)}
    per_k = Counter(dict(it.tags)["k"] for it in items)
    assert per_k == {0: 6, **{k: 30 for k in (1, 2, 4, 8, 16, 32)}}
    by_key = {}
    for it in items:
        tags = dict(it.tags)
        demos = it.prompt.split("\n")[:-1]
        assert len(demos) == tags["k"]
        # Demonstrations never contain a test item (the pool is disjoint from the test docs).
        assert not any(d.rsplit(" ", 1)[0] in test_prompts for d in demos)
        by_key[(tags["test_doc"], tags["seed"], tags["k"])] = demos
    # Nested across k for one (test doc, seed); different across seeds.
    assert by_key[(0, 1, 8)][:4] == by_key[(0, 1, 4)]
    assert by_key[(0, 1, 8)] != by_key[(0, 2, 8)]
    assert {dict(it.tags)["seed"] for it in items} == set(range(5))


def test_fewshot_curve_skips_ks_that_do_not_fit_and_records_them() -> None:
    task = FewShotCurveTask(spec("fewshot_curve", **{**CURVE, "max_context_tokens": 120}))
    items = task.items(None, TOK)
    ks = {dict(it.tags)["k"] for it in items}
    assert 32 not in ks and 16 not in ks and 0 in ks
    assert max(len(TOK.encode_plain(it.prompt)) for it in items) < 120
    names = {s.metric: s for s in task.summaries}
    assert task.manifest_notes["skipped_items"]["k=32"] == 30
    assert not any(m.startswith("skipped_items") for m in names)
    assert "acc[k=32]" not in names and "acc[k=0]" in names


def test_fewshot_curve_runs_the_ks_that_fit_a_short_window() -> None:
    # The model's window, when shorter than max_context_tokens, caps the prompts the same way.
    short = WindowedTokenizer(TOK, 120)
    task = FewShotCurveTask(spec("fewshot_curve", **CURVE))
    items = task.items(None, short)
    assert {dict(it.tags)["k"] for it in items} >= {0}
    assert max(len(TOK.encode_plain(it.prompt)) for it in items) < 120
    assert task.manifest_notes["max_context_tokens"] == 120
    assert task.manifest_notes["skipped_items"]["k=32"] == 30


def test_fewshot_curve_slope_by_hand() -> None:
    task = FewShotCurveTask(spec("fewshot_curve", **CURVE))

    # Right iff the number of demonstrations (lines) in the context is >= 4.
    def score_fn(ctx: str, cont: str) -> float:
        k = ctx.count("\n")
        a, b = ctx.split("\n")[-1].rstrip(" =").split(" + ")
        right = cont.strip() == str(int(a) + int(b))
        return -1.0 if right == (k >= 4) else -3.0

    _, results = run(task, FakeBackend(score_fn=score_fn))
    scores = {s.label: s for s in summary_scores(task, results)}
    xs = [math.log2(k + 1) for k in CURVE["ks"]]  # type: ignore[union-attr]
    ys = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert scores["slope_log2k"].value == pytest.approx(ols_slope(xs, ys))
    assert scores["acc[k=2]"].value == 0.0 and scores["acc[k=8]"].value == 1.0
    assert (
        scores["slope_log2k"].ci_low <= scores["slope_log2k"].value <= scores["slope_log2k"].ci_high
    )


# -- label probes ------------------------------------------------------------------------------

LABELS = dict(
    docs={"generator": "category_words", "seed": 2, "n": 40, "params": {"labels": ["animal", "food", "color"]}},
    prompt="Word: {word}\nCategory:",
    k=8,
    seeds=3,
    n_test=8,
)  # fmt: skip


def _demo_labels(prompt: str) -> list[str]:
    return [line.split(": ")[1] for line in prompt.split("\n") if line.startswith("Category: ")]


def test_label_probe_conditions_have_exact_label_counts() -> None:
    task = LabelProbeTask(spec("label_probe", mode="labels", pcts=[0, 25, 50, 75], **LABELS))
    items = task.items(None, TOK)
    docs = task.docs()
    truth = {d["word"]: d["label"] for d in docs}
    conds = Counter(dict(it.tags)["condition"] for it in items)
    assert conds["zero_shot"] == 8 and conds["gold"] == 24 and conds["pct_50"] == 24
    for it in items:
        tags = dict(it.tags)
        words = [line.split(": ")[1] for line in it.prompt.split("\n") if line.startswith("Word: ")]
        demo_words, labels = words[:-1], _demo_labels(it.prompt)
        assert len(demo_words) == tags["k"] == len(labels)
        correct = sum(truth[w] == lab for w, lab in zip(demo_words, labels, strict=True))
        cond = tags["condition"]
        if cond == "gold":
            assert correct == 8
        elif cond.startswith("pct_"):
            assert correct == 8 * int(cond[4:]) // 100  # exactly k*X/100 gold, rest wrong
        assert it.target == truth[words[-1]]


def test_flipped_labels_counts_and_flip_delta() -> None:
    params = {**LABELS, "docs": {"generator": "category_words", "seed": 2, "n": 32}}
    task = LabelProbeTask(spec("label_probe", mode="flip", **params))
    items = task.items(None, TOK)
    truth = {d["word"]: d["label"] for d in task.docs()}
    for it in items:
        p = int(str(dict(it.tags)["condition"])[5:])
        words = [line.split(": ")[1] for line in it.prompt.split("\n") if line.startswith("Word: ")]
        labels = _demo_labels(it.prompt)
        flipped = sum(truth[w] != lab for w, lab in zip(words[:-1], labels, strict=True))
        assert flipped == 8 * p // 100

    # A model that answers right iff at most half of the demonstrations are flipped.
    def score_fn(ctx: str, cont: str) -> float:
        words = [x.split(": ")[1] for x in ctx.split("\n") if x.startswith("Word: ")]
        labels = _demo_labels(ctx + cont)[: len(words) - 1]
        flipped = sum(truth[w] != lab for w, lab in zip(words[:-1], labels, strict=True))
        right = cont.strip() == truth[words[-1]]
        return -1.0 if right == (flipped <= 4) else -2.0

    _, results = run(task, FakeBackend(score_fn=score_fn))
    s = {x.label: x.value for x in summary_scores(task, results)}
    assert s["acc[flip_0]"] == 1.0 and s["acc[flip_50]"] == 1.0 and s["acc[flip_100]"] == 0.0
    assert s["flip_delta"] == 1.0


def _result(i: int, acc: float, **tags: object) -> ItemResult:
    return ItemResult(i, "h", (), None, "t", {"acc": acc}, dict(tags))  # type: ignore[arg-type]


def test_label_sensitivity_formula() -> None:
    task = LabelProbeTask(spec("label_probe", mode="labels", **LABELS))
    results = []
    # acc_gold 0.9, acc_random 0.6, acc_zero 0.3 over 10 test docs -> (0.9-0.6)/(0.9-0.3) = 0.5
    for i in range(10):
        results.append(_result(3 * i, float(i < 9), condition="gold", test_doc=i))
        results.append(_result(3 * i + 1, float(i < 6), condition="random", test_doc=i))
        results.append(_result(3 * i + 2, float(i < 3), condition="zero_shot", test_doc=i))
    s = {x.label: x for x in summary_scores(task, results)}
    assert s["label_sensitivity"].value == pytest.approx(0.5)
    assert s["acc[gold]"].value == pytest.approx(0.9)


def test_label_probe_rejects_fractional_counts() -> None:
    with pytest.raises(EvalkitError, match="whole number"):
        LabelProbeTask(spec("label_probe", mode="labels", pcts=[30], **LABELS))
    with pytest.raises(EvalkitError, match="unknown key"):
        make_probe(spec("label_probe", mode="labels", bogus=1, **LABELS))


def test_probe_yaml_loads_and_validates(tmp_path: Path) -> None:
    raw = {
        "name": "p",
        "family": "icl",
        "version": 1,
        "kind": "probe",
        "probe": "induction",
        "n": 2,
    }
    spec_ = load_probe_spec(tmp_path / "p.yaml", raw)
    assert spec_.kind == "probe:induction"
    with pytest.raises(EvalkitError, match="unknown probe"):
        load_probe_spec(tmp_path / "p.yaml", {**raw, "probe": "nope"})
    with pytest.raises(EvalkitError, match="unknown key"):
        load_probe_spec(tmp_path / "p.yaml", {**raw, "lenght": 3})


# -- language gaps and family scores -------------------------------------------------------------


def test_language_scores_and_gap_to_english() -> None:
    results = [_result(i, float(i % 2 == 0), language="en") for i in range(10)]
    results += [_result(10 + i, float(i < 2), language="zh") for i in range(10)]
    rows = {s.label: s for s in language_scores("t", "multilingual", [MetricSpec("acc")], results)}
    assert rows["acc[en]"].value == pytest.approx(0.5)
    assert rows["acc[zh]"].value == pytest.approx(0.2)
    gap = rows["acc_gap_en[zh]"]
    assert gap.value == pytest.approx(-0.3) and gap.ci_low <= -0.3 <= gap.ci_high
    assert "acc_gap_en[en]" not in rows


def test_family_scores_mean_of_task_scores() -> None:
    class T:
        def __init__(self, name: str, family: str, metrics: tuple[MetricSpec, ...]) -> None:
            self.name, self.family, self.metrics = name, family, metrics

    a = T("a", "reasoning", (MetricSpec("acc"), MetricSpec("exact_match")))
    b = T("b", "reasoning", (MetricSpec("acc"),))
    c = T("c", "icl", (MetricSpec("acc"),))
    per_task = {
        "a": [_result(i, float(i < 8)) for i in range(10)],  # 0.8
        "b": [_result(i, float(i < 2)) for i in range(40)],  # 0.05
        "c": [_result(i, 1.0) for i in range(5)],
    }
    rows = family_scores([a, b, c], per_task)  # type: ignore[list-item]
    by = {(s.display_task, s.label): s for s in rows}
    fam = by[("family:reasoning", "acc")]
    assert fam.value == pytest.approx((0.8 + 0.05) / 2)  # unweighted over tasks
    assert fam.n == 50 and fam.ci_low <= fam.value <= fam.ci_high
    assert ("family:reasoning", "exact_match") not in by  # reported by one task of two
    assert by[("family:icl", "acc")].value == 1.0  # a family of one task
    # Task scores of the same results agree with the family's inputs.
    (acc_a,) = [s for s in task_scores("a", "reasoning", [MetricSpec("acc")], per_task["a"])]
    assert acc_a.value == pytest.approx(0.8)


def test_score_run_writes_summaries_families_and_tags(tmp_path: Path) -> None:
    import evalkit
    from evalkit.store import read_run

    run_ = evalkit.score(
        "fake",
        tasks=["reasoning_arith_mc", "reasoning_arith_chain_mc", "multilingual_number_words_mc",
               "icl_induction", "icl_fewshot_curve"],
        backend=FakeBackend(),
        limit=8,
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
    )  # fmt: skip
    data = read_run(run_.path)
    rows = {(r.display_task, r.label) for r in data.rows}
    assert ("family:reasoning", "acc") in rows
    assert ("icl_fewshot_curve", "slope_log2k") in rows
    assert ("multilingual_number_words_mc", "acc_gap_en[zh]") in rows
    for col in ("family", "language", "script", "k", "seed", "difficulty", "length"):
        assert col in data.samples.columns, col
