"""The table of task kinds: YAML `kind` (task type) apart from `request` (request shape)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
from evalkit.tasks.kinds import KINDS, CodeKind, kind_table, with_kinds
from evalkit.tasks.native import NativeTask
from evalkit.tasks.registry import builtin_tasks_dir, declared_tasks, read_yaml, resolve_tasks

NEW = """
name: t_mc
family: reasoning
version: 1
kind: native
request: multiple_choice
docs: {generator: addition_mc, seed: 1, n: 10}
prompt: "{a} + {b} ="
choices: choices
gold: gold
"""
OLD = NEW.replace("kind: native\nrequest: multiple_choice", "kind: multiple_choice")


def _write(d: Path, text: str, name: str = "t.yaml") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(text)
    return p


def test_old_spelling_is_migrated_to_the_same_task(tmp_path: Path) -> None:
    _write(tmp_path / "new", NEW)
    _write(tmp_path / "old", OLD)
    (a,) = resolve_tasks(["t_mc"], tmp_path / "new")
    (b,) = resolve_tasks(["t_mc"], tmp_path / "old")
    assert isinstance(a, NativeTask) and isinstance(b, NativeTask)
    assert a.spec.request == b.spec.request == "multiple_choice"
    assert a.content_hash(a.items()) == b.content_hash(b.items())


def test_every_shipped_task_file_uses_the_new_spelling() -> None:
    declared = declared_tasks([builtin_tasks_dir()])
    assert declared
    for d in declared.values():
        raw = read_yaml(d.spec.source_file)
        assert raw["kind"] in KINDS, d.spec.source_file
        assert d.kind is KINDS[raw["kind"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (NEW.replace("kind: native", "kind: essay"), "unknown kind 'essay'"),
        (NEW.replace("request: multiple_choice", "request: essay"), "request must be one of"),
        (NEW.replace("request: multiple_choice\n", ""), "missing required key 'request'"),
        # neither native (no kind) nor lm-eval (no task/group/include)
        (NEW.replace("kind: native\n", ""), "neither a native task"),
        ("- just\n- a list\n", "neither a native task"),
    ],
)
def test_bad_task_files_fail_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(EvalkitError, match=message) as exc:
        resolve_tasks(["t_mc"], tmp_path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_lmeval_yaml_beside_native_files_is_left_to_lmeval(tmp_path: Path) -> None:
    # Positive control for the check above: lm-eval configs and include templates pass.
    _write(tmp_path, NEW)
    _write(tmp_path, "task: x\ndataset_path: y\noutput_type: loglikelihood\n", "lm.yaml")
    _write(tmp_path, "output_type: multiple_choice\ndoc_to_text: q\n", "template.yaml")
    assert set(declared_tasks([tmp_path])) == {"t_mc"}


def test_a_kind_listed_twice_is_an_error() -> None:
    with pytest.raises(EvalkitError, match="'code' is listed twice"):
        with_kinds([CodeKind()])
    with pytest.raises(EvalkitError, match="request shape"):
        kind_table([type("Bad", (CodeKind,), {"name": "generate"})()])
    assert with_kinds([]) is KINDS


def test_chat_single_turn_items_are_counted_not_silent(tmp_path: Path) -> None:
    from evalkit.requests import Generate
    from evalkit.tasks.base import Item, TaskDefaults
    from evalkit.tasks.chat import ChatFormat, chat_all

    class Plain(TaskDefaults):  # declares no chat turns
        name = "plain"

    _write(tmp_path, NEW.replace("docs:", "fewshot: {k: 2, seed: 5}\ndocs:"))
    (native,) = resolve_tasks(["t_mc"], tmp_path)
    fmt = ChatFormat(render=lambda ms: "|".join(m["content"] for m in ms) + "|", template_hash="x")
    gen = Item(0, "Q?", (Generate("Q?", stop=("\n",)),), "A")
    items = {"t_mc": native.items(3), "plain": [gen, gen]}
    out, single = chat_all([native, Plain()], items, fmt)  # type: ignore[list-item]
    # The native task splits its two demonstrations into turns; the plain one cannot.
    assert single == {"plain": 2}
    assert out["t_mc"][0].prompt.count("|") == 5  # 2 x (question, answer) + the question
