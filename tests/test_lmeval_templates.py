"""lm-eval's templates compiled once per source inside evalkit's calls: the same texts as
lm-eval's own per-call compile, one compile per source, and lm-eval left as it was after."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import jinja2
import pytest

from evalkit.tasks import lmeval as adapter
from evalkit.tasks.lmeval_load import load_lmeval_tasks
from evalkit.tasks.lmeval_templates import compiled_once

TASKS_DIR = Path(__file__).resolve().parent / "data" / "lmeval_tasks"
TEMPLATES = [
    "{{a}} + {{b}} =",
    "{{question.strip()}}\nA. {{choices[0]}}\nAnswer:",
    "{{ text | regex_replace('[0-9]+', '#') }}\n",  # lm-eval's own filter; trailing newline
]
DOCS = [
    {"a": i, "b": 2 * i, "question": f"  q{i} ", "choices": [f"c{i}"], "text": f"x{i}y{i * 7}"}
    for i in range(5)
]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from lm_eval import utils

    seen: list[str] = []
    original = utils.env.from_string

    def from_string(source: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(source)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(utils.env, "from_string", from_string)
    return seen


def test_same_texts_as_lmeval_and_one_compile_per_source(monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval import utils

    want = [utils.apply_template(t, d) for t in TEMPLATES for d in DOCS]
    compiles = _counting(monkeypatch)
    plain = [utils.apply_template(t, d) for t in TEMPLATES for d in DOCS]
    # Negative control of the counter: lm-eval compiles on every call.
    assert len(compiles) == len(TEMPLATES) * len(DOCS)
    compiles.clear()
    with compiled_once():
        got = [utils.apply_template(t, d) for t in TEMPLATES for d in DOCS]
    assert got == want == plain
    assert sorted(compiles) == sorted(TEMPLATES)
    assert got[len(DOCS) * 2] == "x#y#\n" and got[1] == "1 + 2 ="


def test_lmeval_is_put_back_after_errors_and_nesting() -> None:
    from lm_eval import utils

    original = utils.apply_template
    # StrictUndefined as in lm-eval
    with pytest.raises(jinja2.UndefinedError), compiled_once():
        assert utils.apply_template is not original
        with compiled_once():  # nested: the outer cache stays
            inner = utils.apply_template
        assert utils.apply_template is inner
        utils.apply_template("{{missing}}", {})
    assert utils.apply_template is original


def _build_all(names: list[str]) -> list[Any]:
    out: list[Any] = []
    for task in load_lmeval_tasks(names, TASKS_DIR):
        out.extend(task.items())
    return out


def test_items_equal_those_built_without_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["evalkit_arith_mc", "evalkit_arith_gen", "evalkit_arith_ll"]
    compiles = _counting(monkeypatch)
    cached = _build_all(names)
    n_cached = len(compiles)
    monkeypatch.setattr(adapter, "compiled_once", contextlib.nullcontext)
    compiles.clear()
    plain = _build_all(names)
    assert cached == plain and len(cached) > 0
    assert n_cached < len(compiles)  # the adapter's builds did take the cache
