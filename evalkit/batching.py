"""Token units into backend calls: units that share a context form one `ScoringGroup` (scored
in one pass over the context), groups are sorted longest first and packed into batches under
the backend's token budget; generation jobs are batched the same way. Pure functions of the
planned work and the budget (engine.py runs the batches)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from evalkit.backends.base import GenerationJob, ScoringGroup
from evalkit.encoding import Unit


def scoring_groups(
    units_of: Mapping[str, Iterable[Unit]], token_budget: int, max_length: int
) -> list[ScoringGroup]:
    """One group per distinct context (split when its continuations do not fit together),
    longest packed length first."""
    by_context: dict[tuple[int, ...], set[tuple[int, ...]]] = defaultdict(set)
    for units in units_of.values():
        for ctx, cont in units:
            by_context[ctx].add(cont)
    # No packed row longer than the model's window (absolute positions, length-dependent
    # RoPE and a model's own buffers are only defined up to it).
    budget = min(token_budget, max_length)
    groups: list[ScoringGroup] = []
    for ctx, conts in by_context.items():
        # Longest continuations first; split a context's continuations into several groups
        # when packing all of them would not fit one batch or the window.
        chunk: list[tuple[int, ...]] = []
        length = len(ctx)
        for cont in sorted(conts, key=lambda c: (-len(c), c)):
            if chunk and length + len(cont) - 1 > budget:
                groups.append(ScoringGroup(ctx, tuple(chunk)))
                chunk, length = [], len(ctx)
            chunk.append(cont)
            length += len(cont) - 1
        groups.append(ScoringGroup(ctx, tuple(chunk)))
    groups.sort(key=lambda g: (-g.packed_length, g.context))
    return groups


def scoring_batches(groups: Sequence[ScoringGroup], token_budget: int) -> list[list[ScoringGroup]]:
    """Consecutive groups whose padded batch (count x the first's length) fits the budget."""
    batches: list[list[ScoringGroup]] = []
    current: list[ScoringGroup] = []
    for g in groups:  # sorted longest first: the first of a batch sets its padded length
        if current and (len(current) + 1) * current[0].packed_length > token_budget:
            batches.append(current)
            current = []
        current.append(g)
    if current:
        batches.append(current)
    return batches


def generation_batches(
    jobs: Mapping[str, GenerationJob], token_budget: int
) -> list[list[tuple[str, GenerationJob]]]:
    """Jobs (by request hash), longest prompt first, batched so that every sample's prompt and
    new tokens fit the budget."""
    ordered = sorted(jobs.items(), key=lambda kv: (-len(kv[1].prompt), kv[0]))
    batches: list[list[tuple[str, GenerationJob]]] = []
    current: list[tuple[str, GenerationJob]] = []
    width = 0
    for h, job in ordered:
        need = (len(job.prompt) + job.max_tokens) * job.n
        if current and (len(current) + 1) * max(width, need) > token_budget:
            batches.append(current)
            current, width = [], 0
        current.append((h, job))
        width = max(width, need)
    if current:
        batches.append(current)
    return batches
