"""`evalkit compare`: pairing, tests, corrections, breakdowns, outputs, chat formatting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import run_cli
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from synthetic_runs import TaskData, binary_pair, make_run

from evalkit.analysis.compare import CompareOptions, base_vs_chat, compare_runs, format_sensitivity
from evalkit.errors import EvalkitError
from evalkit.requests import Generate, Loglikelihood, RollingLoglikelihood
from evalkit.store import read_run
from evalkit.tasks.chat import ChatFormat, chat_items, find_chat_template
from evalkit.tasks.native import NativeTask
from evalkit.tasks.native_spec import load_spec


def evalkit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ab_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A and B: B much better at `math` (a 0/1 task), the same at `recall`, lower (better)
    bits-per-byte on `prose`; items tagged by language."""
    root = tmp_path_factory.mktemp("ab")
    a_math, b_math = binary_pair(300, 0.5, worse=5, better=40, seed=1)
    a_rec, b_rec = binary_pair(200, 0.6, worse=6, better=6, seed=2)
    rng = np.random.default_rng(3)
    a_bpb = rng.normal(2.0, 0.3, 100)
    b_bpb = a_bpb - 0.05 + rng.normal(0, 0.02, 100)
    lang = ["en", "de", "fr"] * 100
    a = make_run(
        root / "A",
        {
            "math": TaskData("reasoning", {"acc": a_math}, tags={"lang": lang}),
            "recall": TaskData("reasoning", {"acc": a_rec}),
            "prose": TaskData("lm", {"bpb": a_bpb}),
        },
    )
    b = make_run(
        root / "B",
        {
            "math": TaskData("reasoning", {"acc": b_math}, tags={"lang": lang}),
            "recall": TaskData("reasoning", {"acc": b_rec}),
            "prose": TaskData("lm", {"bpb": b_bpb}),
        },
        fingerprint="model-b",
    )
    return a, b


def test_paired_deltas_tests_and_corrections(ab_runs: tuple[Path, Path]) -> None:
    report = compare_runs([read_run(p) for p in ab_runs])
    (c,) = report.comparisons
    assert (c.a, c.b, c.kind) == ("A", "B", "delta")
    math_row = c.row("math")
    assert math_row.delta == pytest.approx(35 / 300)
    assert math_row.test == "McNemar (exact)"
    ref = sm_mcnemar([[0, 40], [5, 0]], exact=True).pvalue  # only discordant cells matter
    assert math_row.p_value == pytest.approx(ref)
    assert math_row.ci_low > 0 and math_row.call == "better"
    assert c.row("recall").call == "n.s." and c.row("recall").delta == 0
    prose = c.row("prose")
    assert prose.test == "paired bootstrap" and prose.delta < 0
    assert prose.call == "better"  # bpb is lower-is-better
    tasks = [r for r in c.rows if r.scope == "task"]
    holm = multipletests([r.p_value for r in tasks], method="holm")[1]
    np.testing.assert_allclose([r.p_adjusted for r in tasks], holm)
    # Family: the mean of its tasks' deltas.
    fam = c.row("reasoning", scope="family")
    assert fam.delta == pytest.approx((35 / 300 + 0) / 2)
    assert fam.metric == "acc" and fam.n == 500
    # MDE shrinks with more items and is reported for every row.
    assert all(r.mde > 0 for r in c.rows)


def test_breakdown_by_tag_and_json(ab_runs: tuple[Path, Path]) -> None:
    report = compare_runs([read_run(p) for p in ab_runs], CompareOptions(by="lang"))
    (c,) = report.comparisons
    groups = sorted(r.group for r in c.rows if r.name == "math" and r.group)
    assert groups == ["de", "en", "fr"]
    assert sum(r.n for r in c.rows if r.name == "math" and r.group) == 300
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["comparisons"][0]["rows"][0]["call"] in ("better", "worse", "n.s.")


def test_unpaired_items_are_named_and_no_shared_items_is_an_error(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", {"t": TaskData("f", {"acc": [1, 0, 1, 1]})})
    b = make_run(
        tmp_path / "b",
        {"t": TaskData("f", {"acc": [1, 1, 0]}, doc_ids=[2, 3, 9])},
    )
    (c,) = compare_runs([read_run(a), read_run(b)]).comparisons
    assert c.row("t").n == 2
    assert any("2 items paired, 3 unpaired" in w for w in c.warnings), c.warnings
    other = make_run(tmp_path / "c", {"t": TaskData("f", {"acc": [1, 0]}, doc_ids=[7, 8])})
    with pytest.raises(EvalkitError, match="share no items"):
        compare_runs([read_run(a), read_run(other)])
    differ = make_run(tmp_path / "d", {"u": TaskData("f", {"acc": [1, 0]})})
    proc = run_cli("compare", a, differ)  # in-process: tests/clirun.py
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: runs a and d share no task (t vs u)"], (
        proc.stderr
    )


def test_a_different_gold_target_is_not_the_same_item(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", {"t": TaskData("f", {"acc": [1, 0, 1]})})
    b = make_run(
        tmp_path / "b", {"t": TaskData("f", {"acc": [1, 0, 1]}, targets=["t0", "t1", "other"])}
    )
    (c,) = compare_runs([read_run(a), read_run(b)]).comparisons
    assert c.row("t").n == 2
    assert any("different gold target" in w for w in c.warnings)


def test_clustered_items_widen_the_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    g, m = 20, 10
    shift = np.repeat(rng.normal(0, 0.3, g), m)
    a = rng.normal(1.0, 0.1, g * m)
    b = a + 0.05 + shift + rng.normal(0, 0.05, g * m)
    doc = [f"doc{i // m}" for i in range(g * m)]
    runs = [
        make_run(tmp_path / name, {"t": TaskData("f", {"logprob": v}, tags={"doc": doc})})
        for name, v in (("a", a), ("b", b))
    ]
    plain = compare_runs([read_run(p) for p in runs]).comparisons[0].row("t")
    clustered = compare_runs([read_run(p) for p in runs], CompareOptions(cluster="doc"))
    row = clustered.comparisons[0].row("t")
    assert row.n_clusters == g and row.test == "cluster bootstrap"
    assert (row.ci_high - row.ci_low) > 2 * (plain.ci_high - plain.ci_low)
    assert row.mde > 2 * plain.mde


def test_mixed_direction_family_is_oriented(tmp_path: Path) -> None:
    acc_a, acc_b = binary_pair(400, 0.5, worse=0, better=60, seed=4)
    bpb = np.full(50, 2.0)
    runs = [
        make_run(
            tmp_path / name,
            {
                "q": TaskData("mix", {"acc": acc}),
                "lm": TaskData("mix", {"bpb": bpb + shift}),
            },
        )
        for name, acc, shift in (("a", acc_a, 0.0), ("b", acc_b, -0.1))
    ]
    fam = compare_runs([read_run(p) for p in runs]).comparisons[0].row("mix", scope="family")
    assert fam.metric.startswith("mixed") and fam.higher_is_better is None
    assert fam.delta == pytest.approx((60 / 400 + 0.1) / 2)
    assert fam.call == "better"


def test_cli_writes_markdown_and_json(ab_runs: tuple[Path, Path], tmp_path: Path) -> None:
    md, js = tmp_path / "out.md", tmp_path / "out.json"
    proc = evalkit("compare", *ab_runs, "--by", "lang", "--markdown", md, "--json", js)
    assert proc.returncode == 0, proc.stderr
    assert "A → B" in proc.stdout and "math" in proc.stdout
    text = md.read_text()
    assert "| ✅ better | math | acc ↑ |" in text
    assert "By `lang`:" in text
    data = json.loads(js.read_text())
    assert data["options"]["by"] == "lang"
    assert {r["label"] for r in data["runs"]} == {"A", "B"}


def test_signal_to_noise_flags_a_noisy_task(tmp_path: Path) -> None:
    # Two models far apart on `stable`, close on `noisy`; a training run's last checkpoints
    # wobble on `noisy` more than the models differ.
    def run(name: str, stable: float, noisy: float, step: int | None = None) -> Path:
        n = 200
        s = (np.arange(n) < stable * n).astype(float)
        z = (np.arange(n) < noisy * n).astype(float)
        return make_run(
            tmp_path / name,
            {"stable": TaskData("f", {"acc": s}), "noisy": TaskData("f", {"acc": z})},
            step=step,
            run_name="train" if step is not None else None,
        )

    models = [run("m1", 0.4, 0.50), run("m2", 0.7, 0.52)]
    noise = [
        run(f"c{k}", 0.7 + d, 0.5 + e, step=100 * k)
        for k, (d, e) in enumerate([(0.0, 0.05), (0.005, -0.05), (-0.005, 0.04), (0.0, -0.04)])
    ]
    report = compare_runs(
        [read_run(p) for p in models],
        noise_runs=[read_run(p) for p in noise],
        noise_last=4,
        min_snr=3.0,
    )
    snr = {r.task: r for r in report.snr}
    assert snr["stable"].signal == pytest.approx(0.3 / 0.55)
    assert not snr["stable"].low and snr["noisy"].low
    assert any("noisy" in w for w in report.warnings)
    # Both renderers show the same cells (evalkit.report.markdown.snr_cells), each marking the
    # low task its own way.
    from rich.console import Console

    from evalkit.report.markdown import compare_markdown, num
    from evalkit.report.tables import print_compare

    md = compare_markdown(report)
    console = Console(record=True, width=240)
    print_compare(report, console)
    text = console.export_text()
    for task, mark in (("stable", ""), ("noisy", "⚠️ ")):
        r = snr[task]
        cells = [mark + task, r.metric, num(r.signal, ".3g"), num(r.noise, ".3g")]
        assert "| " + " | ".join(cells) + " |" in md, task
    assert "low noisy" in text and "low stable" not in text
    assert num(snr["noisy"].snr, ".3g") in text


# -- chat formatting -------------------------------------------------------------------------

FEWSHOT_SPEC = """
name: t_fs
family: reasoning
version: 1
kind: native
request: multiple_choice
docs: {generator: addition_mc, seed: 1, n: 30}
prompt: "{a} + {b} ="
choices: choices
gold: gold
fewshot: {k: 2, seed: 5}
"""


def _render(messages: list[dict[str, str]]) -> str:
    out = "<s>"
    for m in messages:
        out += f"[{m['role']}] {m['content']}\n"
    return out + "[assistant] "


def test_fewshot_becomes_turns_and_the_delimiter_goes(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(FEWSHOT_SPEC)
    task = NativeTask(load_spec(spec))
    raw = task.items(3)
    fmt = ChatFormat(render=_render, template_hash="x")
    chat = chat_items(task, raw, fmt)
    docs = task.docs()
    it = chat[1]
    assert it.prompt.count("[user]") == 3 and it.prompt.count("[assistant]") == 3
    assert it.prompt.endswith(f"[user] {docs[1]['a']} + {docs[1]['b']} =\n[assistant] ")
    # Demonstrations answer with the gold choice, without the target delimiter.
    first_answer = it.prompt.split("[assistant] ")[1].split("\n")[0]
    assert first_answer in [str(d["answer"]) for d in docs]
    conts = [r.continuation for r in it.requests if isinstance(r, Loglikelihood)]
    assert conts == docs[1]["choices"]
    assert {r.context for r in it.requests if isinstance(r, Loglikelihood)} == {it.prompt}
    assert it.target == raw[1].target and it.doc_id == raw[1].doc_id
    # A generation prompt that does not end in whitespace keeps the target delimiter.
    tight = ChatFormat(render=lambda m: _render(m).rstrip(), template_hash="y")
    (it,) = chat_items(task, raw[1:2], tight)
    conts = [r.continuation for r in it.requests if isinstance(r, Loglikelihood)]
    assert conts == [" " + c for c in docs[1]["choices"]]


def test_rolling_items_stay_and_unknown_prompts_are_one_turn() -> None:
    from evalkit.tasks.base import Item, TaskDefaults

    class Plain(TaskDefaults):  # gives no chat turns: every prompt is one user turn
        name = "plain"

    rolling = Item(0, "text", (RollingLoglikelihood("text"),), "text")
    fmt = ChatFormat(render=_render, template_hash="x")
    assert chat_items(Plain(), [rolling], fmt)[0] == rolling  # type: ignore[arg-type]
    gen = Item(1, "Q: 2+2?\nA:", (Generate("Q: 2+2?\nA:", stop=("\n",)),), "4")
    (out,) = chat_items(Plain(), [gen], fmt)  # type: ignore[arg-type]
    assert out.prompt == "<s>[user] Q: 2+2?\nA:\n[assistant] "
    (req,) = out.requests
    assert isinstance(req, Generate) and req.prompt == out.prompt and req.stop == ("\n",)
    # A probe asking one document two ways, plus an unconditional log-likelihood.
    probe = Item(
        2,
        "x =",
        (Loglikelihood("x =", " 1"), Loglikelihood("y =", " 1"), Loglikelihood("", " 1")),
        "1",
    )
    (out,) = chat_items(Plain(), [probe], fmt)  # type: ignore[arg-type]
    contexts = [r.context for r in out.requests if isinstance(r, Loglikelihood)]
    assert contexts == [_render([{"role": "user", "content": c}]) for c in ("x =", "y =")] + [""]
    assert [r.continuation for r in out.requests if isinstance(r, Loglikelihood)] == [
        "1",
        "1",
        " 1",
    ]


def test_chat_template_is_found_in_tokenizer_config(tmp_path: Path) -> None:
    assert find_chat_template(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{x}}"}))
    assert find_chat_template(tmp_path) == "{{x}}"


def test_format_pairs_are_found_between_raw_and_templated_runs(tmp_path: Path) -> None:
    a_base, _ = binary_pair(100, 0.5, seed=7)
    raw, templ = binary_pair(100, 0.5, worse=2, better=30, seed=8)
    runs = [
        make_run(tmp_path / "base", {"t": TaskData("f", {"acc": a_base})}, fingerprint="base"),
        make_run(tmp_path / "chat", {"t": TaskData("f", {"acc": raw})}, fingerprint="chat"),
        make_run(
            tmp_path / "chat-t", {"t": TaskData("f", {"acc": templ})}, fingerprint="chat", chat=True
        ),
    ]
    report = compare_runs([read_run(p) for p in runs])
    kinds = [(c.a, c.b, c.kind) for c in report.comparisons]
    assert kinds == [
        ("base", "chat", "delta"),
        ("base", "chat-t", "delta"),
        ("chat", "chat-t", "format"),
    ]
    assert format_sensitivity(report)["t"] == pytest.approx(28 / 100)


# -- base vs chat on real checkpoints --------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
TINY_CHAT = ROOT / "examples" / "checkpoints" / "tiny-chat"


@pytest.fixture(scope="module")
def base_and_chat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """tiny-base and the bundled tiny-chat; without them, a random-init base and a chat copy
    of it made by the same script (a short run)."""
    from conftest import TINY_BASE, make_random_llama

    if (TINY_BASE / "config.json").is_file() and (TINY_CHAT / "config.json").is_file():
        return TINY_BASE, TINY_CHAT
    sys.path.insert(0, str(ROOT / "examples"))
    from train_chat import train_chat

    root = tmp_path_factory.mktemp("chat")
    base = TINY_BASE
    if not (base / "config.json").is_file():
        base = make_random_llama(root / "base", max_position_embeddings=512)
    train_chat(base, root / "chat", steps=20, batch_size=8, log_every=100)
    return base, root / "chat"


def test_base_vs_chat_shows_tuning_and_format_sensitivity(
    base_and_chat: tuple[Path, Path], tmp_path: Path
) -> None:
    import evalkit
    from evalkit.report.markdown import compare_markdown

    base, chat = base_and_chat
    report = evalkit.compare(
        base, chat, suite="smoke", limit=20, use_cache=False, progress=False, out_dir=tmp_path
    )
    labels = [r.label for r in report.runs]
    assert labels == [base.name, chat.name, f"{chat.name}+chat-template"]
    assert [r.chat_template for r in report.runs] == [False, False, True]
    assert [c.kind for c in report.comparisons] == ["delta", "delta", "format"]
    rows = {(r.scope, r.name): r for r in base_vs_chat(report)}
    assert {n for s, n in rows if s == "family"} == {"reasoning", "icl", "language_modeling"}
    # A rolling text is not a question: the template leaves it, and its score, untouched.
    assert rows[("task", "smoke_prose_bpb")].format == 0.0
    # The template changes what the chat model sees on every question task.
    fmt = report.comparisons[2]
    assert all(tp.paired == 20 and tp.prompts_differ == 0 for tp in fmt.pairing)
    assert any(r.format != 0 for (s, n), r in rows.items() if s == "task" and "prose" not in n)
    chat_run = read_run(Path(report.runs[2].path))
    assert chat_run.manifest["chat_template"]["applied"] is True
    assert (
        chat_run.samples.prompt_hash.tolist()
        != read_run(Path(report.runs[1].path)).samples.prompt_hash.tolist()
    )
    md = compare_markdown(report)
    assert "### Base vs chat" in md and "### Format sensitivity" in md
    if chat == TINY_CHAT:
        # The bundled pair: tuning tied arithmetic to the chat format. Raw prompts lose it
        # (significantly, per family too); the template gives it back.
        for name, scope in (("smoke_arith_mc", "task"), ("reasoning", "family")):
            row = rows[(scope, name)]
            assert (row.tuning_call, row.format_call) == ("worse", "better"), row


def test_score_chat_template_needs_a_template(random_ckpt: Path) -> None:
    proc = run_cli("score", random_ckpt, "--suite", "smoke", "--chat-template", "--no-cache")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no chat template" in lines[0], proc.stderr


def test_permutation_test_can_be_chosen(ab_runs: tuple[Path, Path]) -> None:
    runs = [read_run(p) for p in ab_runs]
    perm = compare_runs(runs, CompareOptions(test="permutation")).comparisons[0]
    auto = compare_runs(runs).comparisons[0]
    assert perm.row("math").test == "permutation"
    assert perm.row("math").p_value < 0.001 and auto.row("math").p_value < 0.001
    assert perm.row("recall").p_value == pytest.approx(1.0)
    with pytest.raises(EvalkitError, match="unknown correction"):
        CompareOptions(correction="fdr")


def test_compare_has_the_power_it_reports_at_its_mde() -> None:
    # Issue 14: exact McNemar had 73-78% power at the MDE reported as 80%.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_gate_errors import _binary_pairs

    from evalkit import stats as S

    rng = np.random.default_rng(1)
    for n in (200, 4000):
        mde = float(
            np.mean(
                [
                    S.paired_compare(*_binary_pairs(rng, n, 0.6, 0.0), resamples=200).mde
                    for _ in range(10)
                ]
            )
        )
        reps = 800
        hits = sum(
            S.mcnemar_exact(*_binary_pairs(rng, n, 0.6, mde)).p_value < 0.05 for _ in range(reps)
        )
        assert hits / reps >= 0.8 - 2 * (0.16 / reps) ** 0.5, (n, mde, hits / reps)
