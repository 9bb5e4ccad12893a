"""MoE routing statistics against ground truth.

- A hand-built Mixtral whose router sends each token class to known experts (attention and
  experts output zero, so every layer's router sees the token's own embedding): evalkit's
  tables must report exactly that routing, and a specialisation far above its null.
- A random-weight Mixtral scored on two "families" drawn from the same text distribution: the
  specialisation interval must cover the permutation null (negative control).
- Packed, one-by-one, plain-row and KV-reuse scoring count the same routing; cache hits are
  recomputed, counted, and give a cold run's table.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import evalkit
from evalkit.analysis.routing import (
    ROUTING,
    RoutedItem,
    mutual_information,
    routing_table,
    specialisation,
)

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "examples" / "checkpoints" / "tiny-base"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
N_EXPERTS = 4
# token class -> experts chosen (top-2, first the stronger), per layer
ROUTE = {
    0: {0: (0, 1), 1: (1, 2), 2: (3, 0)},
    1: {0: (2, 3), 1: (3, 0), 2: (1, 2)},
}


def _token_class(text: str) -> int:
    core = text.strip()
    if core.isdigit():
        return 0
    if core.isalpha():
        return 1
    return 2


def _mixtral_config(**extra: Any) -> Any:
    from transformers import MixtralConfig

    base: dict[str, Any] = {
        "vocab_size": 1024,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 256,
        "num_local_experts": N_EXPERTS,
        "num_experts_per_tok": 2,
        "sliding_window": None,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
    }
    return MixtralConfig(**(base | extra))


def _save(model: Any, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for f in TOKENIZER_FILES:
        shutil.copy(TOKENIZER / f, out / f)
    return out


@pytest.fixture(scope="module")
def hand_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import MixtralForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(TOKENIZER))
    torch.manual_seed(0)
    model = MixtralForCausalLM(_mixtral_config())
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.zero_()
        for t in range(emb.shape[0]):
            emb[t, _token_class(tok.decode([t]))] = 1.0
        for layer_ix, layer in enumerate(model.model.layers):
            layer.self_attn.o_proj.weight.zero_()  # attention adds nothing
            for p in layer.mlp.experts.parameters():
                p.zero_()  # nor do the experts: the residual stays the embedding
            router = layer.mlp.gate.weight
            router.zero_()
            for cls, (first, second) in ROUTE[layer_ix].items():
                router[first, cls] = 4.0
                router[second, cls] = 2.0
    return _save(model, tmp_path_factory.mktemp("hand-moe"))


@pytest.fixture(scope="module")
def random_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import MixtralForCausalLM

    torch.manual_seed(1)
    model = MixtralForCausalLM(_mixtral_config(hidden_size=32, intermediate_size=32))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return _save(model, tmp_path_factory.mktemp("random-moe"))


def _tasks(folder: Path, docs: dict[str, list[dict[str, str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for family, rows in docs.items():
        (folder / f"{family}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / f"{family}_ll.yaml").write_text(
            f"name: {family}_ll\nfamily: {family}\nversion: 1\nkind: loglikelihood\n"
            f"docs: {{path: {family}.jsonl}}\n"
            'prompt: "{ctx}"\ncontinuation: "{cont}"\ntags: [shape]\n'
        )
    return folder


def _score(ckpt: Path, tdir: Path, out: Path, **kw: Any) -> Any:
    names = sorted(p.stem for p in tdir.glob("*.yaml"))
    return evalkit.score(
        ckpt,
        tasks=names,
        tasks_dir=tdir,
        backend="hf",
        device="cpu",
        out=out,
        progress=False,
        **({"use_cache": False} | kw),
    )


def _class_docs(seed: int = 0) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    digits = [
        {
            "ctx": "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 9))),
            "cont": " " + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6))),
            "shape": "short" if i % 2 else "long",
        }
        for i in range(12)
    ]
    letters = [
        {
            "ctx": "".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))),
            "cont": " " + "".join(rng.choice("klmnopqrst") for _ in range(rng.randint(1, 6))),
            "shape": "short" if i % 2 else "long",
        }
        for i in range(12)
    ]
    return {"digits": digits, "letters": letters}


def _predictor_tokens(ckpt: Path, ctx: str, cont: str) -> list[int]:
    """The positions that predict the continuation, by plain tokenization (no evalkit)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(ckpt))
    c = tok.encode(ctx)
    whole = tok.encode(ctx + cont)
    assert whole[: len(c)] == c
    return whole[len(c) - 1 : -1]


def _shares(frame: Any, grouping: str, group: str, layer: int) -> np.ndarray:
    rows = frame[
        (frame.scope == "items")
        & (frame.grouping == grouping)
        & (frame.group == group)
        & (frame.layer == layer)
        & (frame.stat == "share")
    ].sort_values("expert")
    return rows.value.to_numpy()


def test_hand_built_router_is_reported_exactly(hand_moe: Path, tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    docs = _class_docs()
    run = _score(hand_moe, _tasks(tmp_path / "t", docs), tmp_path / "run")
    info = run.manifest["routing"]
    assert info["status"] == "collected"
    assert info["layers"] == [0, 1] and info["experts"] == N_EXPERTS and info["top_k"] == 2
    frame = pd.read_parquet(run.path / ROUTING)
    tok = PreTrainedTokenizerFast.from_pretrained(str(hand_moe))
    for family, rows in docs.items():
        # Expected counts from the routing table above and plain tokenization.
        expected = np.zeros((2, N_EXPERTS))
        n_tokens = 0
        for r in rows:
            for t in _predictor_tokens(hand_moe, r["ctx"], r["cont"]):
                cls = _token_class(tok.decode([t]))
                n_tokens += 1
                for layer in (0, 1):
                    for e in ROUTE[layer][cls]:
                        expected[layer, e] += 1
        for layer in (0, 1):
            want = expected[layer] / expected[layer].sum()
            np.testing.assert_allclose(_shares(frame, "family", family, layer), want, atol=1e-12)
            choices = frame[
                (frame.grouping == "family") & (frame.group == family) & (frame.layer == layer)
            ].choices.iloc[0]
            assert choices == 2 * n_tokens
    # Digits and letters go to different experts: specialisation far above its null.
    mi = frame[(frame.grouping == "family") & (frame.stat == "mi_bits")]
    assert len(mi) == 2
    assert (mi.ci_low > mi["null"]).all() and (mi.p_value < 0.01).all()
    # Tags are groupings too, and every share sums to one.
    assert set(frame.grouping) >= {"all", "family", "task", "tag:shape"}
    sums = frame[frame.stat == "share"].groupby(["grouping", "group", "layer"]).value.sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)


def test_random_router_specialisation_covers_the_null(random_moe: Path, tmp_path: Path) -> None:
    rng = random.Random(3)
    words = ["cat", "dog", "7", "42", "run", "blue", "x", "=", "+", "sun", "tree", "13"]

    def doc() -> dict[str, str]:
        return {
            "ctx": " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))),
            "cont": " " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 4))),
            "shape": "any",
        }

    # Two families from one text distribution: the family says nothing about the tokens.
    docs = {"fam_a": [doc() for _ in range(40)], "fam_b": [doc() for _ in range(40)]}
    run = _score(random_moe, _tasks(tmp_path / "t", docs), tmp_path / "run")
    frame = pd.read_parquet(run.path / ROUTING)
    mi = frame[(frame.grouping == "family") & (frame.stat == "mi_bits")]
    assert len(mi) == 2
    assert ((mi.ci_low <= mi["null"]) & (mi["null"] <= mi.ci_high)).all(), mi
    # The router is not degenerate: several experts get tokens.
    assert (_shares(frame, "all", "*", 0) > 0).sum() >= 2


@pytest.mark.parametrize("arch", ["mixtral", "qwen2-moe", "qwen3-moe"])
def test_packed_and_one_by_one_count_the_same_routing(
    arch: str, random_moe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from arch_models import build

    from evalkit.backends import hf_unpacked
    from evalkit.backends.base import ScoringGroup
    from evalkit.backends.hf import HFBackend
    from evalkit.backends.routing import RouterTap

    rng = random.Random(5)
    groups = []
    for _ in range(6):
        ctx = tuple(rng.randrange(3, 1000) for _ in range(rng.randint(2, 12)))
        conts = {tuple(rng.randrange(3, 1000) for _ in range(rng.randint(1, 5))) for _ in range(4)}
        groups.append(ScoringGroup(ctx, tuple(sorted(conts))))

    def counts(backend: HFBackend, batches: list[list[ScoringGroup]]) -> dict[Any, Any]:
        tap = RouterTap.attach(backend.model)
        assert tap is not None
        backend.routing = tap
        for b in batches:
            backend.score(b)
        tap.close()
        backend.routing = None
        return tap.counts

    ckpt = random_moe if arch == "mixtral" else build(arch, tmp_path / arch)[0]
    backend = HFBackend(ckpt, device="cpu", guard=False)
    assert backend.plan.path == "packed"
    packed = counts(backend, [groups])
    singles = [[ScoringGroup(g.context, (c,))] for g in groups for c in g.continuations]
    alone = counts(backend, singles)
    # An MoE evalkit does not pack (OLMoE, DeepSeek, ...) takes the unpacked path: a group's
    # context runs once and its continuations over the KV cache (two forwards per unit), and
    # the tap must add both up to what the plain row counts.
    from evalkit.backends import kv_reuse

    backend.plan = dataclasses.replace(backend.plan, path="unpacked", kv_reuse=kv_reuse.ON)
    reused: list[int] = []
    score_reused = hf_unpacked.score_reused

    def spy(fw: Any, group: ScoringGroup) -> Any:
        reused.append(len(group.continuations))
        return score_reused(fw, group)

    monkeypatch.setattr(hf_unpacked, "score_reused", spy)
    unpacked = counts(backend, [groups])
    assert sum(reused) == sum(len(g.continuations) for g in groups if len(g.continuations) > 1)
    backend.plan = dataclasses.replace(backend.plan, kv_reuse="off (test)")
    rows = counts(backend, [groups])  # the plain path: one row per continuation
    n_units = sum(len(g.continuations) for g in groups)
    assert len(packed) == len(alone) == len(unpacked) == len(rows) == n_units
    for unit, c in packed.items():
        np.testing.assert_array_equal(c, alone[unit])
        np.testing.assert_array_equal(c, unpacked[unit])
        np.testing.assert_array_equal(c, rows[unit])
        # top-2 per predicting position: 2 x continuation length choices per layer
        assert (c.sum(axis=1) == 2 * len(unit[1])).all()


def test_cache_hits_are_recomputed_and_counted(hand_moe: Path, tmp_path: Path) -> None:
    """The rule (routing_run.py): the cache holds no routing, so every request it answered is
    scored again with the tap on, counted; the table equals a cold run's."""
    docs = _class_docs(seed=1)
    both = _tasks(tmp_path / "both", docs)
    digits = _tasks(tmp_path / "digits", {"digits": docs["digits"]})
    cache = {"use_cache": True, "cache_dir": tmp_path / "cache"}
    cold = _score(hand_moe, both, tmp_path / "cold")  # no cache at all
    first = _score(hand_moe, digits, tmp_path / "first", **cache)
    assert first.manifest["routing"]["recomputed_requests"] == 0
    half = _score(hand_moe, both, tmp_path / "half", **cache)  # digits cached, letters not
    engine = half.manifest["engine"]
    assert 0 < engine["reused"] < engine["unique"]
    assert half.manifest["routing"]["recomputed_requests"] == engine["reused"]
    warm = _score(hand_moe, both, tmp_path / "warm", **cache)
    assert warm.manifest["engine"]["computed"] == 0
    assert warm.manifest["routing"]["recomputed_requests"] == warm.manifest["engine"]["unique"]
    assert warm.manifest["routing"]["recompute_seconds"] > 0
    a = pd.read_parquet(cold.path / ROUTING)
    for run in (half, warm):
        pd.testing.assert_frame_equal(a, pd.read_parquet(run.path / ROUTING))


def test_routing_only_runs_just_the_forwards_routing_needs(
    hand_moe: Path, random_ckpt: Path, tmp_path: Path
) -> None:
    from evalkit.errors import EvalkitError
    from evalkit.store import read_run

    tdir = _tasks(tmp_path / "t", _class_docs(seed=2))
    (tdir / "digits_gen.yaml").write_text(
        "name: digits_gen\nfamily: digits\nversion: 1\nkind: generate\n"
        'docs: {path: digits.jsonl}\nprompt: "{ctx}"\ntarget: "{cont}"\nmax_tokens: 3\n'
    )
    full = _score(hand_moe, tdir, tmp_path / "full")
    only = _score(hand_moe, tdir, tmp_path / "only", routing_only=True)
    assert only.manifest.config is not None and only.manifest.config.routing_only  # re-runnable
    assert full.stats.generated_jobs > 0  # the control: a full run generates
    assert only.stats.generated_jobs == 0 and only.manifest["routing_only"] is True
    assert only.stats.computed == full.stats.computed - full.stats.generated_jobs
    assert only.rows == () and only.manifest["routing"]["recomputed_requests"] == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(full.path / ROUTING), pd.read_parquet(only.path / ROUTING)
    )
    data = read_run(only.path)
    assert len(data.samples) == 0 and len(data.rows) == 0
    # The manifest is a full run's (one builder, pipeline/write.build_manifest) less what only
    # scoring fills in: no key a full run records is missing but the sandbox's, per-task item
    # counts are absent, and the plan's facts (hub, hardware, skipped tasks) are there.
    assert set(full.manifest) - set(only.manifest) == set()
    assert set(only.manifest) - set(full.manifest) == {"routing_only"}
    assert "routing_only" not in full.manifest and not full.manifest.routing_only
    assert only.manifest.routing_only and only.manifest.hardware == full.manifest.hardware
    assert [t.name for t in only.manifest.tasks] == [t.name for t in full.manifest.tasks]
    assert all("truncated_items" not in t for t in only.manifest.to_dict()["tasks"])
    assert all("truncated_items" in t for t in full.manifest.to_dict()["tasks"])
    assert only.manifest.routing is not None and full.manifest.routing is not None
    assert only.manifest.routing.items == full.manifest.routing.items > 0
    with pytest.raises(EvalkitError, match="routing-only"):
        _score(random_ckpt, tdir, tmp_path / "dense", routing_only=True)
    with pytest.raises(EvalkitError, match="no-routing"):
        _score(hand_moe, tdir, tmp_path / "off", routing_only=True, routing=False)


def test_routing_only_on_the_command_line_says_what_it_wrote(
    hand_moe: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from evalkit.cli import app
    from evalkit.store import read_run

    tdir = _tasks(tmp_path / "t", _class_docs(seed=3))
    names = ",".join(sorted(p.stem for p in tdir.glob("*.yaml")))
    common = ["--tasks", names, "--tasks-dir", str(tdir), "--backend", "hf", "--device", "cpu"]
    common += ["--no-cache", "--no-progress"]
    out = tmp_path / "only"
    res = CliRunner().invoke(
        app, ["score", str(hand_moe), *common, "--routing-only", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = len(pd.read_parquet(out / ROUTING))
    info = read_run(out).manifest.routing
    assert info is not None and rows > 0
    said = " ".join(res.output.split())  # the console may wrap a long path
    assert f"routing only (no scores): {info.items} item(s) of 2 task(s)" in said
    assert f"{ROUTING}: {rows} row(s) written to" in said and str(out / ROUTING) in said.replace(
        " ", ""
    )
    assert "Scores (95% bootstrap CI)" not in res.output  # no (empty) scores table
    # The control: a full run prints its scores and no routing-only line.
    res = CliRunner().invoke(
        app, ["score", str(hand_moe), *common, "--out", str(tmp_path / "full")]
    )
    assert res.exit_code == 0, res.output
    assert "routing only" not in res.output and "Scores (95% bootstrap CI)" in res.output


def test_no_routing_and_dense_models(hand_moe: Path, random_ckpt: Path, tmp_path: Path) -> None:
    tdir = _tasks(tmp_path / "t", _class_docs())
    off = _score(hand_moe, tdir, tmp_path / "off", routing=False)
    assert off.manifest["routing"] == {"status": "off (--no-routing)"}
    assert not (off.path / ROUTING).exists()
    dense = _score(random_ckpt, tdir, tmp_path / "dense")
    assert "routing" not in dense.manifest
    assert not (dense.path / ROUTING).exists()


def test_vllm_says_routing_is_not_exposed(hand_moe: Path) -> None:
    from evalkit.routing_run import VLLM_NOTE, finish, start

    class Stub:
        name = "vllm"

    session = start(Stub(), True, hand_moe)  # type: ignore[arg-type]
    assert session is not None and session.note == VLLM_NOTE
    assert finish(session, Stub(), [], {}) == (None, {"status": VLLM_NOTE})  # type: ignore[arg-type]


def test_query_reads_routing(hand_moe: Path, tmp_path: Path) -> None:
    from evalkit.catalog import query

    _score(hand_moe, _tasks(tmp_path / "t", _class_docs()), tmp_path / "runs" / "moe")
    res = query(
        "SELECT layer, expert, value FROM routing WHERE grouping = 'family' "
        "AND \"group\" = 'digits' AND stat = 'share' AND layer = 0 ORDER BY expert",
        tmp_path / "runs",
    )
    values = [r[2] for r in res.rows]
    assert len(values) == N_EXPERTS and values[2] == 0.0 and values[3] == 0.0


# -- the statistics alone --------------------------------------------------------------------


def test_mutual_information_of_known_tables() -> None:
    assert mutual_information(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)
    assert mutual_information(np.array([[3, 3], [2, 2]])) == pytest.approx(0.0)
    assert mutual_information(np.array([[0, 0], [0, 0]])) == 0.0


def test_specialisation_interval_covers_the_null_under_independence() -> None:
    """Simulation: routing independent of the label -> the interval covers the permutation
    null in most draws; routing that depends on it -> the interval lies above the null."""
    rng = np.random.default_rng(0)
    covered = 0
    sims = 40
    for s in range(sims):
        counts = rng.multinomial(20, [0.4, 0.3, 0.2, 0.1], size=60)
        labels = ["a"] * 30 + ["b"] * 30
        spec = specialisation(labels, counts, resamples=200, seed=s)
        covered += spec["ci_low"] <= spec["null"] <= spec["ci_high"]
    assert covered / sims >= 0.85
    skewed = np.vstack(
        [
            rng.multinomial(20, [0.4, 0.3, 0.2, 0.1], size=30),
            rng.multinomial(20, [0.1, 0.2, 0.3, 0.4], size=30),
        ]
    )
    spec = specialisation(["a"] * 30 + ["b"] * 30, skewed, resamples=200)
    assert spec["ci_low"] > spec["null"] and spec["p_value"] < 0.01


def test_table_statistics_by_hand() -> None:
    items = [
        RoutedItem({"family": "x"}, np.array([[4, 0, 0, 0]])),
        RoutedItem({"family": "y"}, np.array([[1, 1, 1, 1]])),
    ]
    t = routing_table(items, [3], resamples=100)
    row = t[(t.grouping == "family") & (t.group == "x")]
    assert row[row.stat == "entropy_bits"].value.iloc[0] == 0.0
    assert row[row.stat == "load_cv"].value.iloc[0] == pytest.approx(np.sqrt(3))
    row = t[(t.grouping == "family") & (t.group == "y")]
    assert row[row.stat == "entropy_bits"].value.iloc[0] == pytest.approx(2.0)
    assert row[row.stat == "load_cv"].value.iloc[0] == 0.0
    assert set(t.layer) == {3}


def test_specialisation_interval_covers_the_expected_plug_in_mi() -> None:
    """With a real effect, the interval covers the plug-in MI's expectation (its target, which
    the permutation null's mean is under independence) at about its level."""
    rng = np.random.default_rng(7)
    pa, pb = [0.4, 0.3, 0.2, 0.1], [0.3, 0.3, 0.2, 0.2]

    def draw() -> np.ndarray:
        return np.vstack([rng.multinomial(20, pa, size=30), rng.multinomial(20, pb, size=30)])

    onehot = np.repeat(np.eye(2), 30, axis=0)
    truth = np.mean([mutual_information(onehot.T @ draw()) for _ in range(2000)])
    labels = ["a"] * 30 + ["b"] * 30
    sims = 60
    covered = sum(
        (s := specialisation(labels, draw(), resamples=200, seed=i))["ci_low"]
        <= truth
        <= s["ci_high"]
        for i in range(sims)
    )
    assert covered / sims >= 0.85


def test_moe_run_to_report_section_in_the_browser(hand_moe: Path, tmp_path: Path) -> None:
    """End to end: score -> routing.parquet (items and provenance slices) -> the report's
    routing section with its heatmaps, opened offline in headless Chromium."""
    from cdp import ensure_chromium, open_page

    ckpt = tmp_path / "moe"
    shutil.copytree(hand_moe, ckpt)
    (ckpt / "samples").mkdir()
    (ckpt / "samples" / "numbers.txt").write_text("12345 678\n\n9012 3456\n\n77 88 99\n")
    (ckpt / "samples" / "words.txt").write_text("abc def\n\nghij klm\n\nnop qrs tuv\n")
    slices = "".join(
        f"- {{name: {n}, tokens: 100, share: 0.5, sample_documents: samples/{n}.txt}}\n"
        for n in ("numbers", "words")
    )
    (ckpt / "provenance.yaml").write_text(
        "schema_version: 2\ncheckpoint: {run: hand-moe, step: 1, tokens_seen: 200}\n"
        f"slices:\n{slices}"
    )
    run = _score(ckpt, _tasks(tmp_path / "t", _class_docs()), tmp_path / "run")
    assert run.manifest["routing"]["slice_documents"] == 6
    frame = pd.read_parquet(run.path / ROUTING)
    # Slice documents route by their tokens too: digits' experts for the numbers slice.
    slice_rows = frame[(frame.scope == "slices") & (frame.stat == "share") & (frame.layer == 0)]
    numbers = slice_rows[slice_rows.group == "numbers"].sort_values("expert").value.to_numpy()
    assert numbers[0] > 0.3 and numbers[2] < 0.2
    files = evalkit.make_report(run.path, out=tmp_path / "report", resamples=100)
    section = next(s for s in files.sections if s.id == "routing")
    assert section.note is None
    names = sorted(f.path.name for f in section.figures)
    assert names == [f"routing-{g}-layer{i}.png" for g in ("family", "slice") for i in (0, 1)]
    page = open_page(
        ensure_chromium(),
        Path(files.index).resolve().as_uri(),
        tmp_path / "profile",
        expressions={
            "routing": "document.querySelectorAll('section#routing img').length",
            "decoded": "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
        },
    )
    assert not page.problems, page.problems
    assert page.evaluated["routing"] == 4 and page.evaluated["decoded"] is True


def test_report_says_when_a_run_has_no_routing(random_ckpt: Path, tmp_path: Path) -> None:
    run = _score(random_ckpt, _tasks(tmp_path / "t", _class_docs()), tmp_path / "run")
    files = evalkit.make_report(run.path, out=tmp_path / "report", resamples=100)
    section = next(s for s in files.sections if s.id == "routing")
    assert section.note and "Not an MoE" in section.note and not section.figures


def test_bundled_tiny_moe_end_to_end(tmp_path: Path) -> None:
    """The committed tiny MoE: score -> routing.parquet (task families and its provenance
    slices' sample documents) -> the report's routing section, in headless Chromium."""
    from cdp import ensure_chromium, open_page

    ckpt = ROOT / "examples" / "checkpoints" / "tiny-moe"
    run = evalkit.score(
        ckpt,
        tasks=["reasoning_arith_mc", "multilingual_number_words_mc"],
        limit=8,
        device="cpu",
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
    )
    info = run.manifest["routing"]
    assert info["status"] == "collected" and info["layers"] == [0, 1, 2, 3]
    assert info["experts"] == 4 and info["top_k"] == 2 and info["slice_documents"] == 5 * 32
    frame = pd.read_parquet(run.path / ROUTING)
    assert set(frame[(frame.scope == "slices") & (frame.stat == "share")].group) - {"*"} == {
        "arithmetic",
        "kv",
        "multilingual",
        "code",
        "prose",
    }
    files = evalkit.make_report(run.path, out=tmp_path / "report", resamples=100)
    page = open_page(
        ensure_chromium(),
        Path(files.index).resolve().as_uri(),
        tmp_path / "profile",
        expressions={"routing": "document.querySelectorAll('section#routing img').length"},
    )
    assert not page.problems, page.problems
    assert page.evaluated["routing"] == 8  # family and slice heatmaps, 4 layers each


def _stage_code(source: str) -> list[str]:
    """What in a module writes runs or builds manifests (the pipeline's write stage's work)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(("evalkit.store", "evalkit.pipeline")):
                found.append(f"imports {node.module}")
        elif isinstance(node, ast.Constant) and node.value in ("schema_version", "routing_only"):
            found.append(f"writes manifest key {node.value!r}")
    return found


def test_routing_run_collects_and_the_pipeline_writes() -> None:
    source = (ROOT / "evalkit" / "routing_run.py").read_text()
    assert _stage_code(source) == []
    # Negative control: the routing-only writer it used to hold is flagged.
    old = (
        "def routing_only(out, manifest):\n"
        "    from evalkit.store import write_run\n"
        "    manifest = {'schema_version': 3, 'routing_only': True}\n"
    )
    assert len(_stage_code(old)) == 3
