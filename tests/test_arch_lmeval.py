"""On a Gemma-2-shaped model (sliding window shorter than the texts, attention-logit and final
softcapping) evalkit scores the same as lm-eval's HF backend, both computing the model as
specified (eager attention: SDPA would drop the softcapping, and lm-eval's default is SDPA)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arch_models import build
from test_lmeval_parity import TASKS_DIR, _cwd, _samples, ll_tolerance

from evalkit.backends.hf import HFBackend
from evalkit.engine import Engine, EngineOptions
from evalkit.tasks.lmeval_load import load_lmeval_tasks

TASKS = ["evalkit_arith_mc", "evalkit_prose_rolling"]
LIMIT = 12


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gemma2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("gemma2", tmp_path_factory.mktemp("gemma2"))[0]


def test_gemma2_scores_equal_lmeval(gemma2: Path, tmp_path: Path) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with _cwd(tmp_path):
        theirs: dict[str, Any] = dict(
            simple_evaluate(  # type: ignore[arg-type]
                model="hf",
                model_args=f"pretrained={gemma2},dtype=float32,device=cpu,attn_implementation=eager",
                tasks=list(TASKS),
                task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
                batch_size=8,
                limit=LIMIT,
                log_samples=True,
                bootstrap_iters=0,
            )
        )
        tasks = load_lmeval_tasks(TASKS, TASKS_DIR)
        backend = HFBackend(gemma2, device="cpu", dtype="float32")
        assert backend.settings["attn_implementation"] == "eager"
        assert backend.settings["path"] == "packed"
        items = {t.name: t.items(LIMIT) for t in tasks}
        engine = Engine(backend, None, EngineOptions(progress=False))
        result = engine.run([r for its in items.values() for it in its for r in it.requests])
    long_texts = 0
    for t in tasks:
        its = items[t.name]
        responses = [tuple(result.responses[r.hash] for r in it.requests) for it in its]
        mine = t.score(its, responses)
        rows = _samples(theirs, t.name)["none"]
        assert len(rows) == len(mine) == LIMIT
        for r, s in zip(mine, rows, strict=True):
            other = [
                float(resp[0][0]) if isinstance(resp[0], tuple | list) else float(resp[0])
                for resp in s["resps"]
            ]
            for a, b in zip(r.loglikelihoods, other, strict=True):
                assert abs(a - b) <= ll_tolerance(b), (t.name, r.doc_id, a, b)
        for it in its:
            for req in it.requests:
                if hasattr(req, "text"):
                    long_texts += len(backend.tokenizer.encode(req.text)) > 24
    assert long_texts > 0  # the rolling texts reach past the sliding window
    assert backend.guard_report["status"] == "passed"
