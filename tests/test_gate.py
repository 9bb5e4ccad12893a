"""`evalkit gate`: policy validation, verdict logic, reports, and the exit codes end to end."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from clirun import run_cli
from synthetic_runs import TaskData, binary_pair, make_run

import evalkit
from evalkit.analysis.gate import gate_runs, load_policy, parse_policy
from evalkit.errors import EvalkitError
from evalkit.report.markdown import gate_junit, gate_markdown
from evalkit.store import read_run

ROOT = Path(__file__).resolve().parents[1]
GATES = ROOT / "tasks" / "gates"


def evalkit_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


POLICY = {  # synthetic task names: no suite to validate them against
    "alpha": 0.05,
    "min_n": 20,
    "checks": [
        {"task": "mc", "metric": "acc", "margin": 0.05},
        {"family": "lm", "metric": "bpb", "margin": 0.1},
    ],
}


def _runs(tmp: Path, name: str, acc: np.ndarray, bpb: np.ndarray, **kw: object) -> Path:
    return make_run(
        tmp / name,
        {"mc": TaskData("reasoning", {"acc": acc}), "prose": TaskData("lm", {"bpb": bpb})},
        **kw,  # type: ignore[arg-type]
    )


# -- policies --------------------------------------------------------------------------------


def test_shipped_policies_are_valid() -> None:
    smoke = load_policy(GATES / "smoke.yaml")
    assert smoke.suite == "smoke" and len(smoke.checks) == 4
    suite = yaml.safe_load((ROOT / "tasks" / "suites" / "smoke.yaml").read_text())
    assert {c.name for c in smoke.checks if c.scope == "task"} <= set(suite["tasks"])
    transfer = load_policy(GATES / "transfer.yaml")
    assert transfer.suite == "transfer"
    assert {c.name for c in transfer.checks} == {
        "reasoning",
        "multilingual",
        "icl",
        "code",
        "longctx",
    }


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"checks": []}, "non-empty 'checks'"),
        ({"alpha": 0.7}, "alpha must lie in"),
        ({"correction": "magic"}, "correction must be one of"),
        ({"checks": [{"task": "mc", "metric": "acc"}]}, "needs a 'margin'"),
        ({"checks": [{"task": "mc", "family": "x", "metric": "acc", "margin": 0}]}, "exactly one"),
        ({"checks": [{"task": "mc", "metric": "acc", "margin": -1}]}, "margin must lie in"),
        ({"checks": [{"task": "mc", "metric": "acc", "margin": 0.1, "min_n": 2.5}]}, "integer"),
        ({"baseline": {"select": "median"}}, "baseline.select"),
    ],
)
def test_bad_policies_are_named_errors(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(EvalkitError, match="invalid gate policy") as err:
        parse_policy({**POLICY, **change}, "p.yaml")
    assert fragment in str(err.value)


# -- verdicts on synthetic runs --------------------------------------------------------------


def test_identical_runs_pass(tmp_path: Path) -> None:
    acc, _ = binary_pair(200, 0.6, seed=1)
    bpb = np.random.default_rng(1).normal(2, 0.2, 50)
    a = _runs(tmp_path, "a", acc, bpb)
    b = _runs(tmp_path, "b", acc, bpb)
    v = gate_runs([read_run(a)], [read_run(b)], parse_policy(POLICY))
    assert v.outcome == "pass" and v.exit_code == 0
    assert all(c.outcome == "pass" for c in v.checks)


def test_a_large_drop_is_a_regression_and_a_small_sample_is_inconclusive(tmp_path: Path) -> None:
    acc_a, acc_b = binary_pair(300, 0.7, worse=45, better=3, seed=2)
    bpb = np.random.default_rng(2).normal(2, 0.2, 50)
    a = _runs(tmp_path, "a", acc_a, bpb)
    b = _runs(tmp_path, "b", acc_b, bpb + 0.01)
    v = gate_runs([read_run(a)], [read_run(b)], parse_policy(POLICY))
    mc = v.checks[0]
    assert mc.outcome == "regression" and v.exit_code == 1
    assert mc.delta == pytest.approx(-42 / 300)
    assert mc.ci_high < -0.05
    assert v.checks[1].outcome == "pass"  # bpb rose by 0.01, well inside the 0.1 margin
    # The same kind of drop on 20 items: the interval cannot rule out, nor show, a drop > 5
    # points beyond doubt -> inconclusive, with how many items would settle it.
    acc_a, acc_b = binary_pair(20, 0.7, worse=1, seed=3)
    small_a = _runs(tmp_path, "sa", acc_a, bpb[:20])
    small_b = _runs(tmp_path, "sb", acc_b, bpb[:20])
    v = gate_runs([read_run(small_a)], [read_run(small_b)], parse_policy(POLICY))
    assert v.outcome == "inconclusive" and v.exit_code == 3
    assert "cannot rule out a drop larger than 0.05" in v.checks[0].reason
    assert v.checks[0].items_needed > 20


def test_min_n_and_lower_is_better_orientation(tmp_path: Path) -> None:
    acc, _ = binary_pair(15, 0.6, seed=4)
    bpb = np.full(15, 2.0)
    a = _runs(tmp_path, "a", acc, bpb)
    worse = _runs(tmp_path, "b", acc, bpb + np.random.default_rng(4).normal(0.5, 0.05, 15))
    v = gate_runs([read_run(a)], [read_run(worse)], parse_policy({**POLICY, "min_n": 10}))
    lm = v.checks[1]
    assert lm.higher_is_better is False and lm.delta > 0.4
    assert lm.outcome == "regression"  # bits per byte went UP by ~0.5
    v = gate_runs([read_run(a)], [read_run(a)], parse_policy(POLICY))  # min_n 20 > 15 items
    assert {c.outcome for c in v.checks} == {"inconclusive"}
    # 15 identical 0/1 items cannot rule out a 5-point drop; identical bpb can, but min_n
    # holds the pass back.
    assert "cannot rule out a drop larger than 0.05" in v.checks[0].reason
    assert "at least 20" in v.checks[1].reason


def test_baseline_best_and_mean_of_the_last_runs(tmp_path: Path) -> None:
    bpb = np.full(100, 2.0)
    base_runs = []
    for step, gain in ((100, 0), (200, 30), (300, 10)):
        _, acc = binary_pair(400, 0.5, better=gain, seed=5)
        base_runs.append(
            _runs(
                tmp_path, f"s{step}", acc, bpb, step=step, run_name="train", fingerprint=str(step)
            )
        )
    _, cand = binary_pair(400, 0.5, better=12, seed=5)
    c = _runs(tmp_path, "cand", cand, bpb)
    pol = parse_policy(POLICY)
    latest = gate_runs([read_run(p) for p in base_runs], [read_run(c)], pol)
    assert latest.baseline == (str(base_runs[-1]),) and latest.checks[0].outcome == "pass"
    best = gate_runs([read_run(p) for p in base_runs], [read_run(c)], pol, select="best", last=3)
    assert best.checks[0].baseline_runs == (str(base_runs[1]),)
    assert best.checks[0].delta == pytest.approx(-18 / 400)
    mean = gate_runs([read_run(p) for p in base_runs], [read_run(c)], pol, select="mean", last=2)
    assert mean.checks[0].baseline == pytest.approx(
        read_run(base_runs[1]).samples.acc.mean() / 2
        + read_run(base_runs[2]).samples.acc.mean() / 2
    )
    assert len(mean.checks[0].baseline_runs) == 2


def test_reports_junit_and_markdown(tmp_path: Path) -> None:
    acc_a, acc_b = binary_pair(300, 0.7, worse=45, seed=6)
    bpb = np.full(30, 2.0)
    a = _runs(tmp_path, "a", acc_a, bpb)
    b = _runs(tmp_path, "b", acc_b, bpb)
    v = gate_runs([read_run(a)], [read_run(b)], parse_policy(POLICY))
    suite = ET.fromstring(gate_junit(v))
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["mc.acc"].find("failure") is not None
    assert cases["lm.bpb"].find("failure") is None
    md = gate_markdown(v)
    assert "❌ REGRESSION (exit 1)" in md and "| ❌ REGRESSION | task `mc` |" in md


def test_python_api_returns_the_same_verdict(tmp_path: Path) -> None:
    acc, _ = binary_pair(200, 0.6, seed=7)
    bpb = np.full(40, 2.0)
    a = _runs(tmp_path, "a", acc, bpb)
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    v = evalkit.gate(baseline=a, candidate=a, policy=policy)
    assert v.passed and v.exit_code == 0
    assert v.to_dict()["checks"][0]["outcome"] == "pass"
    with pytest.raises(EvalkitError, match="task mc: not in the candidate"):
        other = make_run(tmp_path / "o", {"x": TaskData("lm", {"bpb": bpb})})
        evalkit.gate(baseline=a, candidate=other, policy=policy)


# -- end to end on real checkpoints: the three scenarios of the issue --------------------------
#
# The bundled tiny-base when it exists, else a random-init Llama (the same kind as conftest's
# random_ckpt, with a window long enough for the smoke suite). A random model sits at chance,
# so only a much larger dose of noise makes its bits-per-byte regress.

sys.path.insert(0, str(ROOT / "examples"))
from damage_checkpoint import damage  # noqa: E402

POLICY_FILE = GATES / "smoke.yaml"


@pytest.fixture(scope="module")
def gate_ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from conftest import TINY_BASE, make_random_llama

    root = tmp_path_factory.mktemp("gate-ckpts")
    if (TINY_BASE / "config.json").is_file():
        base, heavy, light = TINY_BASE, 1.0, 0.3
    else:
        base = make_random_llama(root / "random", max_position_embeddings=512)
        heavy, light = 30.0, 0.3
    return {
        "base": base,
        "damaged": damage(base, root / "damaged", scale=heavy, seed=0),
        "dented": damage(base, root / "dented", scale=light, seed=1),
    }


@pytest.fixture(scope="module")
def gate_runs_dir(
    gate_ckpts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate-runs")

    cache = root / "cache"

    def score(ckpt: Path, name: str, limit: int, use_cache: bool = False) -> Path:
        run = evalkit.score(
            ckpt,
            suite="smoke",
            limit=limit,
            out=root / name,
            use_cache=use_cache,
            cache_dir=cache,
            progress=False,
        )
        return run.path

    runs = {
        "base": score(gate_ckpts["base"], "base", 100, use_cache=True),
        # CPU scoring is deterministic: a second run computed afresh would match this one,
        # which reads the first run's results back from the cache (and costs nothing).
        "base-again": score(gate_ckpts["base"], "base-again", 100, use_cache=True),
        "damaged": score(gate_ckpts["damaged"], "damaged", 40),
    }
    runs["dented-20"] = score(gate_ckpts["dented"], "dented-20", 20)
    return runs


def _gate(
    runs: dict[str, Path], candidate: str, tmp: Path, *, process: bool = False
) -> subprocess.CompletedProcess[str]:
    # One case crosses the process boundary (`python -m evalkit.cli gate`); the others run the
    # same typer app in this process (tests/clirun.py), sparing an interpreter start each.
    return (evalkit_cli if process else run_cli)(
        "gate", "--baseline", runs["base"], "--candidate", runs[candidate],
        "--policy", POLICY_FILE, "--junit", tmp / "junit.xml", "--summary", tmp / "summary.md",
    )  # fmt: skip


def test_gate_passes_two_runs_of_the_same_checkpoint(
    gate_runs_dir: dict[str, Path], tmp_path: Path
) -> None:
    proc = _gate(gate_runs_dir, "base-again", tmp_path, process=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"


def test_gate_catches_the_damaged_checkpoint(
    gate_runs_dir: dict[str, Path], tmp_path: Path
) -> None:
    proc = _gate(gate_runs_dir, "damaged", tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REGRESSION" in (tmp_path / "summary.md").read_text()
    # 40 candidate items against 100 baseline items: paired on 40, the rest named.
    assert "40 items paired, 60 unpaired" in proc.stdout


def test_gate_is_inconclusive_on_20_items_against_a_small_true_drop(
    gate_runs_dir: dict[str, Path], tmp_path: Path
) -> None:
    proc = _gate(gate_runs_dir, "dented-20", tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    verdict = evalkit.gate(
        baseline=gate_runs_dir["base"], candidate=gate_runs_dir["dented-20"], policy=POLICY_FILE
    )
    assert verdict.exit_code == 3
    outcomes = {c.check.name: c.outcome for c in verdict.checks}
    assert "regression" not in outcomes.values()
    inconclusive = [c for c in verdict.checks if c.outcome == "inconclusive"]
    assert inconclusive and all(c.n == 20 for c in inconclusive)
    assert all("cannot rule out a drop larger than" in c.reason for c in inconclusive)


def test_gate_errors_exit_2(gate_runs_dir: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite: smoke\nchecks: [{task: smoke_arith_mc, metric: acc}]\n")
    proc = run_cli(
        "gate", "--baseline", gate_runs_dir["base"], "--candidate", gate_runs_dir["base"],
        "--policy", bad,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid gate policy") and "margin" in proc.stderr
    proc = run_cli(
        "gate", "--baseline", tmp_path / "nope", "--candidate", gate_runs_dir["base"],
        "--policy", POLICY_FILE,
    )  # fmt: skip
    assert proc.returncode == 2 and "baseline run not found" in proc.stderr


def test_cli_baseline_folder_best_of_last_runs(tmp_path: Path) -> None:
    import json

    bpb = np.full(100, 2.0)
    folder = tmp_path / "train"
    for step, gain in ((100, 0), (200, 40), (300, 5)):
        _, acc = binary_pair(400, 0.5, better=gain, seed=8)
        _runs(folder, f"s{step}", acc, bpb, step=step, run_name="train", fingerprint=str(step))
    _, cand = binary_pair(400, 0.5, better=5, seed=8)
    c = _runs(tmp_path, "cand", cand, bpb)
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    out = tmp_path / "v.json"
    args = ("gate", "--baseline", folder, "--candidate", c, "--policy", policy, "--json", out)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stdout  # the latest run (step 300) is matched
    proc = run_cli(*args, "--baseline-select", "best", "--baseline-last", "2")
    assert proc.returncode == 1, proc.stdout  # the best of the last two (step 200) is not
    verdict = json.loads(out.read_text())
    assert verdict["baseline_select"] == "best" and verdict["exit_code"] == 1
    assert verdict["checks"][0]["baseline_runs"] == [str(folder / "s200")]


def test_optional_checks_are_skipped_and_clusters_follow_the_tag(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    g, m = 30, 5  # 30 source documents with 5 questions each
    doc = [f"d{i // m}" for i in range(g * m)]
    base = rng.normal(0.5, 0.1, g * m)
    cand = base + np.repeat(rng.normal(0.0, 0.1, g), m)
    runs = [
        make_run(tmp_path / name, {"q": TaskData("fam", {"p_correct": v}, tags={"doc": doc})})
        for name, v in (("a", base), ("b", cand))
    ]
    raw = {
        "min_n": 20,
        "checks": [
            {"family": "fam", "metric": "p_correct", "margin": 0.02, "cluster": "doc"},
            {"family": "code", "metric": "pass@1", "margin": 0.03, "required": False},
        ],
    }
    v = gate_runs([read_run(runs[0])], [read_run(runs[1])], parse_policy(raw))
    (check,) = v.checks
    assert check.n == 150 and check.n_clusters == 30
    assert any("family code" in w and "skipped (not required)" in w for w in v.warnings)
    plain = gate_runs(
        [read_run(runs[0])],
        [read_run(runs[1])],
        parse_policy({**raw, "checks": [{**raw["checks"][0], "cluster": None}]}),
    )
    assert check.mde > 1.5 * plain.checks[0].mde  # clustered items carry less information
    with pytest.raises(EvalkitError, match=r"family code / pass@1 \(required\)"):
        required = {**raw["checks"][1], "required": True}
        gate_runs(
            [read_run(runs[0])], [read_run(runs[1])], parse_policy({**raw, "checks": [required]})
        )
