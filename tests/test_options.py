"""lm-eval's everyday options: --num-fewshot, --gen-kwargs, --seed.

lm-eval tasks must build exactly the requests lm-eval's own `simple_evaluate` builds under the
same options (captured from a scripted LM); native tasks refuse a few-shot count their spec fixes,
take one their spec allows; seeds reach the few-shot sampler and the bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.errors import EvalkitError
from evalkit.requests import Generate, Loglikelihood
from evalkit.tasks.lmeval_load import load_lmeval_tasks
from evalkit.tasks.options import apply_options, make_options, parse_gen_kwargs
from evalkit.tasks.registry import resolve_tasks

TASKS_DIR = Path(__file__).resolve().parent / "data" / "lmeval_tasks"
LIMIT = 6


def _lmeval_requests(tasks: list[str], **kwargs: Any) -> dict[str, list[tuple[Any, ...]]]:
    """The request arguments lm-eval's simple_evaluate sends its LM, per request type."""
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

    seen: dict[str, list[tuple[Any, ...]]] = {"loglikelihood": [], "generate_until": []}

    class Capture(LM):  # type: ignore[misc]
        def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            seen["loglikelihood"] += [tuple(r.args) for r in requests]
            return [(-1.0, False)] * len(requests)

        def loglikelihood_rolling(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            raise AssertionError("not used")

        def generate_until(self, requests: Any, disable_tqdm: bool = False) -> list[Any]:
            seen["generate_until"] += [tuple(r.args) for r in requests]
            return ["1"] * len(requests)

    simple_evaluate(
        model=Capture(),
        tasks=tasks,
        task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
        limit=LIMIT,
        log_samples=False,
        **kwargs,
    )
    return seen


def _evalkit_items(tasks: list[str], **options: Any) -> list[Any]:
    objs = apply_options(load_lmeval_tasks(tasks, TASKS_DIR), make_options(**options))
    return [r for t in objs for it in t.items(LIMIT) for r in it.requests]


def test_num_fewshot_and_seed_build_lm_evals_requests() -> None:
    theirs = _lmeval_requests(["evalkit_arith_mc"], num_fewshot=1, fewshot_random_seed=7)
    mine = _evalkit_items(["evalkit_arith_mc"], num_fewshot=1, seed=7)
    assert all(isinstance(r, Loglikelihood) for r in mine)
    assert sorted((r.context, r.continuation) for r in mine) == sorted(theirs["loglikelihood"])
    # The override and the seed are both visible: 1 demonstration (the YAML says 3) ...
    default = _evalkit_items(["evalkit_arith_mc"])
    assert mine[0].context.count("\n") == 1 and default[0].context.count("\n") == 3
    # ... and another seed draws other demonstrations.
    other = _evalkit_items(["evalkit_arith_mc"], num_fewshot=1, seed=8)
    assert {r.context for r in other} != {r.context for r in mine}


def test_gen_kwargs_build_lm_evals_generation_requests() -> None:
    kw = "max_gen_toks=4,until=."
    theirs = _lmeval_requests(["evalkit_arith_gen"], gen_kwargs=kw)
    mine = _evalkit_items(["evalkit_arith_gen"], gen_kwargs=kw)
    assert all(isinstance(r, Generate) for r in mine)
    assert [r.prompt for r in mine] == [a[0] for a in theirs["generate_until"]]
    for r, (_, gk) in zip(mine, theirs["generate_until"], strict=True):
        assert r.max_tokens == 4 == gk["max_gen_toks"]
        until = [gk["until"]] if isinstance(gk["until"], str) else list(gk["until"])
        assert list(r.stop) == until
    # Not a generation task: lm-eval ignores gen kwargs there, and so does evalkit.
    mc = _evalkit_items(["evalkit_arith_mc"], gen_kwargs=kw)
    assert mc == _evalkit_items(["evalkit_arith_mc"])


def test_gen_kwargs_use_lm_evals_syntax() -> None:
    assert parse_gen_kwargs("temperature=0,max_gen_toks=64,do_sample=false,until='x'") == {
        "temperature": 0,
        "max_gen_toks": 64,
        "do_sample": False,
        "until": "x",
    }
    with pytest.raises(EvalkitError, match="key=value"):
        parse_gen_kwargs("max_gen_toks")


def test_lm_eval_tasks_fixed_at_zero_shot_stay_zero_shot(tmp_path: Path) -> None:
    src = (TASKS_DIR / "evalkit_arith_mc.yaml").read_text()
    root = tmp_path / "t"
    root.mkdir()
    for f in ("utils.py", "arith.jsonl"):
        (root / f).write_text((TASKS_DIR / f).read_text())
    (root / "zero.yaml").write_text(
        src.replace("task: evalkit_arith_mc", "task: zero_mc")
        .replace("num_fewshot: 3", "num_fewshot: 0")
        .replace("tag: evalkit_lmeval_tests\n", "")
    )
    (task,) = apply_options(load_lmeval_tasks(["zero_mc"], root), make_options(num_fewshot=2))
    assert task.manifest_fields["num_fewshot"] == 0  # type: ignore[attr-defined]


NATIVE = """name: {name}
family: test
version: 1
kind: multiple_choice
docs: {{path: docs.jsonl}}
prompt: "Q{{{{q}}}}:"
choices: choices
gold: gold
fewshot: {fewshot}
metrics: [acc]
"""


def _native_dir(tmp_path: Path) -> Path:
    root = tmp_path / "native"
    root.mkdir()
    docs = [{"q": i, "choices": ["a", "b"], "gold": i % 2} for i in range(12)]
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "fixed.yaml").write_text(NATIVE.format(name="opt_fixed", fewshot="{k: 2}"))
    (root / "free.yaml").write_text(
        NATIVE.format(name="opt_free", fewshot="{k: 2, overridable: true}")
    )
    return root


def test_native_tasks_refuse_a_fixed_k_and_take_an_overridable_one(tmp_path: Path) -> None:
    root = _native_dir(tmp_path)
    with pytest.raises(EvalkitError) as err:
        apply_options(resolve_tasks(["opt_fixed"], root), make_options(num_fewshot=4))
    msg = str(err.value)
    assert "opt_fixed" in msg and "k=2" in msg and "overridable" in msg and "\n" not in msg
    # The same k as the spec's is no change at all.
    apply_options(resolve_tasks(["opt_fixed"], root), make_options(num_fewshot=2))

    (free,) = apply_options(resolve_tasks(["opt_free"], root), make_options(num_fewshot=4))
    items = free.items()
    assert items[0].prompt.count("\n\n") == 4
    (again,) = apply_options(resolve_tasks(["opt_free"], root), make_options(num_fewshot=4))
    assert [i.prompt for i in again.items()] == [i.prompt for i in items]
    (seeded,) = apply_options(
        resolve_tasks(["opt_free"], root), make_options(num_fewshot=4, seed=3)
    )
    assert [i.prompt for i in seeded.items()] != [i.prompt for i in items]


def test_num_fewshot_refused_by_tasks_without_a_few_shot_count() -> None:
    with pytest.raises(EvalkitError, match="code_tiny_functions"):
        apply_options(resolve_tasks(["code_tiny_functions"]), make_options(num_fewshot=1))
    with pytest.raises(EvalkitError, match="--num-fewshot must be >= 0"):
        make_options(num_fewshot=-1)


def test_native_generation_takes_until_and_max_gen_toks() -> None:
    (task,) = apply_options(
        resolve_tasks(["smoke_arith_gen"]), make_options(gen_kwargs="max_gen_toks=3,until=;")
    )
    reqs = [r for it in task.items(3) for r in it.requests]
    assert all(isinstance(r, Generate) and r.max_tokens == 3 and r.stop == (";",) for r in reqs)
    with pytest.raises(EvalkitError, match="top_p"):
        apply_options(resolve_tasks(["smoke_arith_gen"]), make_options(gen_kwargs="top_p=0.9"))


def test_seed_and_options_reach_the_manifest_and_the_bootstrap(tmp_path: Path) -> None:
    def run(seed: int | None, name: str) -> Any:
        return evalkit.score(
            "unused",
            tasks=["smoke_arith_mc", "smoke_arith_gen"],
            limit=30,
            backend=FakeBackend(),
            use_cache=False,
            progress=False,
            seed=seed,
            gen_kwargs="max_gen_toks=5",
            out=tmp_path / name,
        )

    a, b, c = run(None, "a"), run(5, "b"), run(5, "c")
    assert a.manifest["seeds"] == {"bootstrap": 0}
    assert b.manifest["seeds"] == {"bootstrap": 5, "fewshot": 5, "sampling": 5}
    assert b.manifest["options"] == {
        "num_fewshot": None,
        "gen_kwargs": {"max_gen_toks": 5},
        "seed": 5,
    }

    # A continuous metric: its interval is a bootstrap, so the seed moves it (0/1 metrics get
    # Wilson intervals, which have no randomness to seed).
    def pc(run: Any) -> Any:
        return next(
            s for s in run.rows if s.display_task == "smoke_arith_mc" and s.label == "p_correct"
        )

    assert pc(a).value == pc(b).value
    assert (pc(a).ci_low, pc(a).ci_high) != (pc(b).ci_low, pc(b).ci_high)
    assert (pc(b).ci_low, pc(b).ci_high) == (pc(c).ci_low, pc(c).ci_high)
