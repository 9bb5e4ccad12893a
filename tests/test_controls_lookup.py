"""The in-context lookup few-shot curve (`tasks/icl/fewshot_lookup.yaml`, issue 16): the same
`fewshot_curve` probe as icl_fewshot_curve (accuracy per k, slope against log2(k+1), CIs) on a
seeded random key -> value mapping that only the demonstrations reveal. Its graders are
calibrated here on scripted models through the shipped task file: a model that looks the key
up in its context reaches the exact maximum curve (recomputed from the prompts); a model that
ignores the demonstrations, one that knows the mapping, and one that merely prefers values it
has seen in the context all have no slope."""

from __future__ import annotations

import math
import random
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.errors import EvalkitError
from evalkit.tasks.probes.common import ols_slope
from evalkit.tasks.probes.lookup import LOOKUP_KEYS, LOOKUP_VALUES, incontext_lookup_mc
from evalkit.tasks.registry import resolve_tasks

T = "icl_fewshot_lookup"
KS = (0, 1, 2, 4, 8, 16, 32)


def _demos(ctx: str) -> tuple[dict[str, str], str]:
    """The demonstrations' key -> value pairs and the query key of a prompt."""
    *lines, query = ctx.split("\n")
    return dict(line.split() for line in lines), query.strip()


def _looker(ctx: str, cont: str) -> float:
    """Answers with the value a demonstration gives the query key; else no preference."""
    shown, key = _demos(ctx)
    if key not in shown:
        return -2.0
    return -1.0 if cont.strip() == shown[key] else -3.0


MAPPING: dict[str, str] = {}  # filled from the task's own documents: the "knower" cheats


def _knower(ctx: str, cont: str) -> float:
    return -1.0 if cont.strip() == MAPPING[_demos(ctx)[1]] else -3.0


def _seen_values(ctx: str, cont: str) -> float:
    """Prefers any value that occurs in the context (a copier without the key)."""
    return -1.0 if cont.strip() in _demos(ctx)[0].values() else -3.0


def _null(ctx: str, cont: str) -> float:
    return -2.0


def _run(tmp: Path, name: str, fn: object, limit: int | None = None) -> evalkit.ScoreRun:
    return evalkit.score(
        name,
        tasks=[T],
        backend=FakeBackend(fn),  # type: ignore[arg-type]
        out=tmp / name,
        use_cache=False,
        progress=False,
        limit=limit,
    )


def _scores(run: evalkit.ScoreRun) -> dict[str, float]:
    return {s.label: s.value for s in run.rows if s.display_task == T}


def _expected_maximum(run: evalkit.ScoreRun) -> dict[int, float]:
    """The obvious computation from the scored prompts: an item is right when its key is
    shown, else when the tie goes to the gold (index 0 wins ties)."""
    samples = pd.read_parquet(Path(run.path) / "samples.parquet")
    task = resolve_tasks([T])[0]
    items = {it.doc_id: it for it in task.items(tokenizer=FakeBackend().tokenizer)}
    hits: dict[int, list[float]] = {}
    for row in samples.itertuples(index=False):
        it = items[int(row.doc_id)]
        shown, key = _demos(it.prompt)
        k = int(dict(it.tags)["k"])
        first = it.requests[0].continuation.strip()
        hits.setdefault(k, []).append(float(key in shown or first == it.target))
    return {k: math.fsum(v) / len(v) for k, v in hits.items()}


def test_the_generator_hides_a_one_to_one_mapping_in_rounds() -> None:
    docs = incontext_lookup_mc(random.Random(5), 48, n_keys=16, n_choices=4)
    mapping = {d["key"]: d["value"] for d in docs}
    assert len(mapping) == 16 and len(set(mapping.values())) == 16  # one-to-one
    assert all(mapping[d["key"]] == d["value"] for d in docs)  # the same mapping everywhere
    for r in range(3):  # every key once per round: test docs ask each key, the pool shows it twice
        assert sorted(d["key"] for d in docs[16 * r : 16 * (r + 1)]) == sorted(mapping)
    for d in docs:
        assert d["choices"][d["gold"]] == d["value"] and len(set(d["choices"])) == 4
        assert set(d["choices"]) <= set(mapping.values())  # distractors: other keys' values
    assert set(mapping) <= set(LOOKUP_KEYS) and not set(LOOKUP_KEYS) & set(LOOKUP_VALUES)
    golds = [d["gold"] for d in incontext_lookup_mc(random.Random(1), 1600)]
    assert all(abs(golds.count(g) / 1600 - 0.25) < 0.05 for g in range(4))  # chance is 1/4
    with pytest.raises(TypeError, match="multiple of n_keys"):
        incontext_lookup_mc(random.Random(0), 40, n_keys=16)


def test_a_bad_document_count_in_a_task_file_fails_loudly(tmp_path: Path) -> None:
    src = (Path(__file__).resolve().parents[1] / "tasks/icl/fewshot_lookup.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(src.replace("name: icl_fewshot_lookup", "name: bad_l")
                                       .replace("n: 48", "n: 50"))  # fmt: skip
    with pytest.raises(EvalkitError, match="multiple of n_keys"):
        evalkit.score("bad", tasks=["bad_l"], tasks_dir=tmp_path, backend=FakeBackend(_null),
                      out=tmp_path / "run", use_cache=False, progress=False)  # fmt: skip


def test_a_model_that_looks_keys_up_reaches_the_exact_maximum_curve(tmp_path: Path) -> None:
    run = _run(tmp_path, "looker", _looker)
    got = _scores(run)
    want = _expected_maximum(run)
    assert set(want) == set(KS)  # nothing skipped: every k fits the 512-token cap
    for k in KS:
        assert got[f"acc[k={k}]"] == pytest.approx(want[k])
    assert got["acc[k=32]"] == 1.0  # the whole pool shows every key
    accs = [got[f"acc[k={k}]"] for k in KS]
    assert all(b >= a - 0.1 for a, b in pairwise(accs)) and accs[-1] - accs[0] >= 0.6
    slope = ols_slope([math.log2(k + 1) for k in KS], accs)
    assert got["slope_log2k"] == pytest.approx(slope) and slope > 0.1
    ci = next(s for s in run.rows if s.display_task == T and s.label == "slope_log2k")
    assert ci.ci_low > 0.05  # clearly above a flat curve


def test_no_slope_without_looking_up_the_key(tmp_path: Path) -> None:
    docs = incontext_lookup_mc(random.Random(20277), 48, n_keys=16, n_choices=4)
    MAPPING.update({d["key"]: d["value"] for d in docs})
    knower = _scores(_run(tmp_path, "knower", _knower, 8))
    null = _scores(_run(tmp_path, "null", _null, 8))
    seen = _scores(_run(tmp_path, "seen", _seen_values, 8))
    assert all(knower[f"acc[k={k}]"] == 1.0 for k in KS) and knower["slope_log2k"] == 0.0
    # The null model's answer is the first choice at every k: the gold's position, ~1/4.
    assert len({null[f"acc[k={k}]"] for k in KS}) == 1 and null["slope_log2k"] == 0.0
    assert 0.1 <= null["acc"] <= 0.45
    # A value occurs in the demonstrations exactly as often as its key: seeing values is no clue.
    assert abs(seen["slope_log2k"]) <= 0.03 and abs(seen["acc"] - 0.25) <= 0.1
