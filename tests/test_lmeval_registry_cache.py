"""lm-eval's registry is indexed once a process (evalkit.tasks.lmeval_load._registry_manager); a
user's tasks directory is indexed on every call, so an edit between calls is seen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from evalkit.tasks import lmeval_load as lmeval


def _write_task(root: Path, name: str) -> None:
    """A user-style lm-eval YAML over a JSONL file (as tests/test_lmeval_adapter.py writes)."""
    data = root / "docs.jsonl"
    data.write_text('{"q": "1 + 1 =", "a": "2"}\n')
    (root / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        f"  data_files: {{test: {json.dumps(str(data))}}}\n"
        f"  cache_dir: {json.dumps(str(root / 'hf-cache'))}\n"
        "test_split: test\n"
        "output_type: loglikelihood\n"
        'doc_to_text: "{{q}}"\n'
        'doc_to_target: " {{a}}"\n'
        "metric_list:\n"
        "  - metric: acc\n"
    )


class CountingManager:
    """Stands in for lm-eval's TaskManager: counts how often an index is built."""

    built: ClassVar[list[tuple[Any, bool]]] = []

    def __init__(self, include_path: Any = None, include_defaults: bool = True) -> None:
        CountingManager.built.append((include_path, include_defaults))
        self.task_index: dict[str, Any] = {}


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, bool]]:
    import lm_eval.tasks

    CountingManager.built = []
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", CountingManager)
    # An empty holder for this test; the session's real index comes back after it.
    monkeypatch.setattr(lmeval, "_REGISTRY", {})
    return CountingManager.built


def test_the_registry_is_indexed_once_a_process(counting: list[tuple[Any, bool]]) -> None:
    first = lmeval._task_manager(["a"], None)
    second = lmeval._task_manager(["b", "c"], None)
    assert first is second
    assert counting == [(None, True)]


def test_a_tasks_dir_is_indexed_on_every_call(
    counting: list[tuple[Any, bool]], tmp_path: Path
) -> None:
    # Names the directory does not define: the registry is added, the directory re-read.
    lmeval._task_manager(["x"], tmp_path)
    lmeval._task_manager(["x"], tmp_path)
    assert counting == [(str(tmp_path), False), (str(tmp_path), True)] * 2


def test_a_task_added_to_a_tasks_dir_between_calls_is_found(tmp_path: Path) -> None:
    _write_task(tmp_path, "cache_one")
    assert [t.name for t in lmeval.load_lmeval_tasks(["cache_one"], tmp_path)] == ["cache_one"]
    _write_task(tmp_path, "cache_two")
    assert [t.name for t in lmeval.load_lmeval_tasks(["cache_two"], tmp_path)] == ["cache_two"]
