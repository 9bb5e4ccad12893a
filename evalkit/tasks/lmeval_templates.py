"""lm-eval's Jinja templates compiled once per source while evalkit builds or scores a task.

lm-eval's `utils.apply_template` compiles its template source on every call
(`env.from_string(template).render(**doc)`): 3,500 compiles for 500 five-shot MMLU-like
documents, most of the time it takes to build their requests. While evalkit calls into an
lm-eval task, `apply_template` is replaced by one that keeps the compiled template of each
source, compiled by the same environment (`lm_eval.utils.env`: its filters, StrictUndefined,
trailing newlines), so every text is the one lm-eval renders; a compiled Jinja template keeps no
state between renders. The original is put back on exit, so lm-eval called on its own (the
benchmark's other side, a user's code in the same process) is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Distinct template sources kept; a task has a handful (text, target, choices, description).
MAX_TEMPLATES = 256
_active: list[int] = []


@contextmanager
def compiled_once() -> Iterator[None]:
    """Within the block, lm-eval's `apply_template` compiles each template source once."""
    from lm_eval import utils

    original = getattr(utils, "apply_template", None)
    env = getattr(utils, "env", None)
    if _active or original is None or env is None:  # nested, or an lm-eval laid out otherwise
        yield
        return
    compiled: dict[str, Any] = {}

    def apply_template(template: str, doc: dict[str, Any]) -> str:
        found = compiled.get(template)
        if found is None:
            found = env.from_string(template)
            if len(compiled) < MAX_TEMPLATES:
                compiled[template] = found
        return str(found.render(**doc))

    utils.apply_template = apply_template
    _active.append(1)
    try:
        yield
    finally:
        _active.pop()
        utils.apply_template = original
