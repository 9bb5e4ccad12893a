"""A new task kind added the documented way (tests/toy_kind.py + one table entry) scores end to
end on the fake backend; without the entry its files are an error naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy_kind import EchoKind

import evalkit
from evalkit.backends.fake import FakeBackend
from evalkit.errors import EvalkitError
from evalkit.store import read_run
from evalkit.tasks.kinds import TaskKind

ECHO = """
name: toy_echo
family: icl
version: 1
kind: echo
words: [apple, stone, river, cloud]
"""


def _score(tmp_path: Path, backend: FakeBackend, out: str, kinds: list[TaskKind]):  # type: ignore[no-untyped-def]
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "echo.yaml").write_text(ECHO)
    return evalkit.score(
        "fake",
        tasks=["toy_echo"],
        tasks_dir=tasks,
        backend=backend,
        out=tmp_path / out,
        use_cache=False,
        progress=False,
        task_kinds=kinds,
    )


def test_a_toy_kind_scores_end_to_end(tmp_path: Path) -> None:
    # Positive control: a backend that always continues with the repeated word copies every
    # item; negative control: one that never does copies none.
    copier = FakeBackend(lambda ctx, cont: 0.0 if cont.strip() == ctx.split()[-1] else -9.0)
    never = FakeBackend(lambda ctx, cont: -3.0)
    good = _score(tmp_path, copier, "good", [EchoKind()])
    bad = _score(tmp_path, never, "bad", [EchoKind()])
    value = {
        name: {s.label: s.value for s in r.rows if s.display_task == "toy_echo"}
        for name, r in [("good", good), ("bad", bad)]
    }
    assert value["good"]["copied"] == 1.0 and value["bad"]["copied"] == 0.0
    run = read_run(good.path)
    assert len(run.samples) == 4
    (entry,) = [t for t in good.manifest["tasks"] if t["name"] == "toy_echo"]
    assert entry["n_items"] == 4


def test_without_its_table_entry_the_kind_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(EvalkitError, match=r"echo\.yaml: unknown kind 'echo'"):
        _score(tmp_path, FakeBackend(), "none", [])


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("name", "", r"echo\.yaml: missing required key 'name'"),
        ("words", "", r"echo\.yaml: missing required key 'words'"),
        ("", "colour: red\n", r"echo\.yaml: unknown key\(s\) for kind echo: colour"),
    ],
)
def test_a_kind_loads_its_header_through_the_shared_loader(
    tmp_path: Path, drop: str, extra: str, message: str
) -> None:
    # The toy kind's file is checked as every kind's is: one line naming the file, not a
    # KeyError from the kind's own code.
    text = "".join(line + "\n" for line in ECHO.splitlines() if not line.startswith(f"{drop}:"))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "echo.yaml").write_text(text + extra)
    with pytest.raises(EvalkitError, match=message):
        evalkit.score(
            "fake",
            tasks=["toy_echo"],
            tasks_dir=tasks,
            backend=FakeBackend(),
            out=tmp_path / "run",
            use_cache=False,
            progress=False,
            task_kinds=[EchoKind()],
        )
