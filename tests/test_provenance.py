"""Provenance end to end on the mix family (examples/checkpoints/mix-*): the schema, the
attribution ground truth, slice fit, and contamination with planted items."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import run_cli

from evalkit import api
from evalkit.analysis.contamination import EvalText, GramIndex, iter_documents, words
from evalkit.errors import EvalkitError
from evalkit.provenance import load_provenance
from evalkit.tasks.registry import resolve_tasks

ROOT = Path(__file__).resolve().parents[1]
CKPTS = ROOT / "examples" / "checkpoints"
GRID = [f"mix-a{a}-k{k}" for a in ("04", "10", "25") for k in ("01", "02", "04")]
TASKS = ["attr_arith_mc", "attr_kv_facts_mc"]


def evalkit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The 3 x 3 mix grid scored on the arithmetic and kv-facts probes (one process)."""
    root = tmp_path_factory.mktemp("sweep")
    runs = []
    for name in GRID:
        run = api.score(
            CKPTS / name, tasks=TASKS, out=root / name, cache_dir=root / "cache", progress=False
        )
        runs.append(run.path)
    return runs


# -- schema ---------------------------------------------------------------------------------


def test_bundled_provenance_is_valid_and_kept_in_the_manifest(sweep: list[Path]) -> None:
    for name in ("tiny-base", "tiny-chat", *GRID, "mix-planted"):
        prov = load_provenance(CKPTS / name / "provenance.yaml")
        assert abs(sum(prov.shares.values()) - 1) < 0.01
    manifest = json.loads((sweep[0] / "manifest.json").read_text())
    kept = manifest["provenance"]
    assert kept["schema_version"] == 2 and kept["checkpoint"]["run"] == GRID[0]
    arith = next(s for s in kept["slices"] if s["name"] == "arithmetic")
    assert arith["share"] == pytest.approx(0.04, abs=1e-3)
    assert Path(arith["sample_documents"]).is_file()


GOOD = """
schema_version: 2
checkpoint: {run: r, step: 10, tokens_seen: 1000, parent: null, mix_id: abc}
slices:
  - {name: arithmetic, tokens: 600, share: 0.6, timestamp: 2026-01-01, sample_documents: a.txt}
  - {name: prose, tokens: 400, share: 0.4, repeats: 2, quality: 0.5, license: CC-BY}
"""


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("share: 0.4,", "share: 0.3,"), "slices[*].share"),
        (("tokens: 600", "tokens: -1"), "slices[0].tokens"),
        (("repeats: 2", "repeat: 2"), "slices[1].repeat"),
        (("step: 10", "step: ten"), "checkpoint.step"),
        (("a.txt", "missing.txt"), "slices[0].sample_documents"),
        (("schema_version: 2", "schema_version: 9"), "schema_version"),
        (("run: r, ", ""), "checkpoint.run"),
    ],
)
def test_a_bad_manifest_names_the_field(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    (tmp_path / "a.txt").write_text("1 + 2 = 3\n")
    p = tmp_path / "provenance.yaml"
    p.write_text(GOOD)
    prov = load_provenance(p)
    assert prov.slice("arithmetic").sample_documents == str((tmp_path / "a.txt").resolve())
    assert prov.slice("arithmetic").timestamp == "2026-01-01"
    p.write_text(GOOD.replace(*edit))
    with pytest.raises(EvalkitError, match=f"bad provenance .*: {re.escape(field)}"):
        load_provenance(p)


def test_cli_bad_provenance_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("tokens: 600", "tokens: lots"))
    proc = run_cli(  # in this process (tests/clirun.py); `attribute` below is a real one
        "score", CKPTS / "mix-a04-k04", "--tasks", "attr_kv_facts_mc", "--provenance", bad,
        "--out", tmp_path / "run", "--no-cache",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "slices[0].tokens" in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_runs_slices_shows_each_mix(sweep: list[Path]) -> None:
    proc = run_cli("runs", sweep[0].parent, "--slices")
    assert proc.returncode == 0, proc.stderr
    assert "arithmetic 4.0%" in proc.stdout and "arithmetic 25.0%" in proc.stdout
    assert "code 40.0%" in proc.stdout


# -- attribution ground truth -----------------------------------------------------------------


def test_attribute_names_the_slice_behind_each_family(sweep: list[Path]) -> None:
    report = api.attribute(*sweep, resamples=1000)
    arith = report.effect("arithmetic", "arithmetic")
    kv = report.effect("retrieval", "kv")
    assert arith.significant and arith.ci_low is not None and arith.ci_low > 0, arith
    assert kv.significant and kv.ci_low is not None and kv.ci_low > 0, kv
    for family in ("arithmetic", "retrieval"):
        filler = report.effect(family, "prose")
        assert filler.identifiable and not filler.significant, filler
        # code is held at 40% in every run: the design says nothing about it.
        code = report.effect(family, "code")
        assert not code.identifiable and code.effect is None
        assert code.reason == "share barely varies"
    # The slice that drives a family is not the one behind the other.
    assert not report.effect("arithmetic", "kv").significant
    assert not report.effect("retrieval", "arithmetic").significant


def test_attribute_cli_writes_table_json_and_heatmap(sweep: list[Path], tmp_path: Path) -> None:
    out_json, png = tmp_path / "attr.json", tmp_path / "attr.png"
    proc = evalkit(
        "attribute", *sweep, "--resamples", "200", "--json", out_json, "--plot", png,
        "--reference", "prose",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not identifiable" in proc.stdout and "drives" in proc.stdout
    data = json.loads(out_json.read_text())
    assert {e["slice"] for e in data["effects"]} == {"arithmetic", "kv", "prose", "code"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ablation_pair_reports_paired_deltas_beside_slice_differences(sweep: list[Path]) -> None:
    low, high = sweep[GRID.index("mix-a04-k02")], sweep[GRID.index("mix-a25-k02")]
    report = api.attribute(low, high)
    assert not report.effects and len(report.pairs) == 1
    pair = report.pairs[0]
    diff = {d.slice: d for d in pair.slices}
    assert diff["arithmetic"].tokens_b > 5 * diff["arithmetic"].tokens_a
    rows = {(r.scope, r.name): r for r in pair.comparison.rows if r.group is None}
    assert rows[("task", "attr_arith_mc")].delta > 0


def test_slice_fit_tracks_the_slice_share(sweep: list[Path]) -> None:
    low = api.slice_fit(CKPTS / "mix-a04-k04", progress=False, use_cache=False)
    high = api.slice_fit(CKPTS / "mix-a25-k04", progress=False, use_cache=False)
    assert set(low) == {"arithmetic", "kv", "prose", "code"}
    assert all(0 < v < 8 for v in low.values())
    # More arithmetic in the mix: arithmetic held-out text is predicted better.
    assert high["arithmetic"] < low["arithmetic"]


# -- contamination ----------------------------------------------------------------------------


def test_ngram_index_and_document_formats(tmp_path: Path) -> None:
    assert words("12 + 5 = 17.") == ["12", "+", "5", "=", "17", "."]
    items = [
        EvalText("t", 0, "36 + 39 = 75"),
        EvalText("t", 1, " ".join(f"w{i}" for i in range(20))),
    ]
    index = GramIndex(items, n=13)
    assert index.matches("noise 36 + 39 = 75 noise") == {0}
    assert index.matches("36 + 39 = 76") == set()
    assert index.matches(" ".join(f"w{i}" for i in range(3, 16))) == {1}  # one 13-gram
    assert index.matches(" ".join(f"w{i}" for i in range(3, 15))) == set()  # only 12 words
    plain = tmp_path / "docs.txt.gz"
    with gzip.open(plain, "wt") as fh:
        fh.write("first doc\nline two\n\nsecond doc\n")
    assert list(iter_documents(plain)) == ["first doc\nline two\n", "second doc\n"]
    dolma = tmp_path / "docs.jsonl"
    dolma.write_text(
        json.dumps({"id": "1", "text": "x", "source": "s", "added": "", "metadata": {}})
    )
    assert list(iter_documents(dolma)) == ["x"]


def test_planted_items_are_flagged_with_their_slice(tmp_path: Path) -> None:
    run = api.score(
        CKPTS / "mix-planted", tasks=["contam_arith_mc"], out=tmp_path / "run",
        cache_dir=tmp_path / "cache", progress=False,
    )  # fmt: skip
    planted = set((ROOT / "examples" / "planted_contam_arith.txt").read_text().splitlines())
    report = api.contamination(run.path, tasks=["contam_arith_mc"])
    texts = {
        it.doc_id: f"{it.prompt} {it.target}"
        for it in resolve_tasks(["contam_arith_mc"])[0].items()
    }
    expected = {d for d, t in texts.items() if t in planted}
    assert len(expected) == 60
    flagged = report.flagged("contam_arith_mc")
    assert set(flagged) == expected  # every planted item, and no clean one
    assert all(slices == ("prose",) for slices in flagged.values())
    # The gain on dirty items is attributed to the slice they were planted in (prose), not to
    # the arithmetic slice the skill comes from, which flags nothing.
    row = report.row("contam_arith_mc", "prose")
    assert row.dirty_minus_clean is not None and row.ci_low is not None and row.ci_low > 0, row
    with pytest.raises(KeyError):
        report.row("contam_arith_mc", "arithmetic")
    # A checkpoint (no run): flags only, from its own provenance.yaml.
    flags_only = api.contamination(CKPTS / "mix-planted", tasks=["contam_arith_mc"])
    assert set(flags_only.flagged("contam_arith_mc")) == expected
    assert flags_only.row("contam_arith_mc").score_clean is None


def test_contamination_cli(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = evalkit(
        "contamination", CKPTS / "mix-planted", "--tasks", "contam_arith_mc", "--json", out
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["slices"][0]["documents"] > 0
    proc = run_cli("contamination", CKPTS / "tiny-base", "--tasks", "contam_arith_mc")
    assert proc.returncode == 2 and "sample documents" in proc.stderr


def test_kv_facts_task_matches_the_training_script() -> None:
    import importlib.util

    from evalkit.tasks.generators import KV_FACT_KEYS, kv_fact_value

    spec = importlib.util.spec_from_file_location("train_tiny", ROOT / "examples" / "train_tiny.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The facts slice the mix checkpoints were trained on states each key's value as the task
    # scores it, and uses only the task's keys.
    import random as _random

    stated = [
        line for doc in module.gen_kv_facts(_random.Random(0), 200) for line in doc.splitlines()
    ]
    facts = [re.fullmatch(r"key (\w+) is (\d+)\.", line) for line in stated]
    facts = [m for m in facts if m]
    assert len(facts) > 200
    assert {m.group(1) for m in facts} <= set(KV_FACT_KEYS)
    assert all(int(m.group(2)) == kv_fact_value(m.group(1)) for m in facts)


def test_report_over_a_mix_sweep_draws_the_attribution_heatmap(
    sweep: list[Path], tmp_path: Path
) -> None:
    from report_checks import assert_png

    files = api.make_report(*sweep, out=tmp_path / "report", resamples=200)
    md = files.markdown.read_text()
    assert "## Attribution to training-data slices" in md
    heatmap = tmp_path / "report" / "plots" / "attribution.png"
    assert_png(heatmap)
    assert "plots/attribution.png" in md
    # The table names the arithmetic slice's effect on the arithmetic family as significant.
    assert re.search(
        r"\| arithmetic \| arithmetic \| \+0\.\d+ \| \[\+0\.\d+, \+0\.\d+\] \| yes", md
    )
