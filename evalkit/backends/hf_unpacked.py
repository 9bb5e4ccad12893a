"""The unpacked forwards, under the model's own masks and position ids, for what packing cannot
reproduce (`arch.py` decides): a group with several continuations runs its context once and
reuses its KV cache where the cache allows (`kv_reuse.py`); the rest as one right-padded row per
(context, continuation), the obvious computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.backends import kv_reuse
from evalkit.backends.base import ScoringGroup, TokenScore
from evalkit.backends.hf_forward import Forward, per_group
from evalkit.backends.routing import grouped, routed


def score_unpacked(fw: Forward, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
    """Under the model's own masks and position ids, for what packing cannot reproduce: a
    group with several continuations runs its context once and reuses its KV cache where
    the cache allows (`kv_reuse.py`); the rest as one right-padded row per (context,
    continuation)."""
    limit = fw.plan.rope_threshold
    reuse = [
        i
        for i, g in enumerate(groups)
        if fw.plan.kv_reuse == kv_reuse.ON
        and len(g.continuations) > 1
        # Length-dependent RoPE: frequencies follow the forward's largest position.
        and (limit is None or g.longest_branch <= limit)
    ]
    results: list[tuple[TokenScore, ...] | None] = [None] * len(groups)
    for i in reuse:
        results[i] = score_reused(fw, groups[i])
    rest = [i for i in range(len(groups)) if results[i] is None]
    if rest:
        for i, r in zip(rest, score_rows(fw, [groups[i] for i in rest]), strict=True):
            results[i] = r
    return [r for r in results if r is not None]


def context_pass(fw: Forward, context: tuple[int, ...]) -> tuple[Any, Any]:
    """Hidden states and KV cache of one context, alone."""
    import torch

    out = fw.decoder(input_ids=torch.tensor([context], device=fw.device), use_cache=True)
    return out.last_hidden_state, out.past_key_values


def score_reused(fw: Forward, group: ScoringGroup) -> tuple[TokenScore, ...]:
    """One context pass; every continuation's first token from its last position, the
    other tokens as a right-padded batch over the (repeated) cache. An MoE's routing adds
    up over both passes per continuation (the context's last position once for each), as
    its plain row would count it (`routing.py`)."""
    with grouped(fw.routing):
        return _score_reused_passes(fw, group)


def _score_reused_passes(fw: Forward, group: ScoringGroup) -> tuple[TokenScore, ...]:
    import copy

    import torch

    n_ctx = len(group.context)
    conts = group.continuations
    ctx = group.context
    with routed(
        fw.routing,
        n_ctx,
        [0] * len(conts),
        [n_ctx - 1] * len(conts),
        lambda: [(ctx, c) for c in conts],
    ):
        hidden, cache = context_pass(fw, ctx)
    first_lp, first_hit = fw.token_scores(
        hidden, [0] * len(conts), [n_ctx - 1] * len(conts), [c[0] for c in conts]
    )
    token_lp = [[lp] for lp in first_lp]
    greedy = [[hit] for hit in first_hit]
    multi = [i for i, c in enumerate(conts) if len(c) > 1]
    width = max((len(conts[i]) - 1 for i in multi), default=0)
    pad = fw.pad_id
    parts = kv_reuse.chunks(len(multi), n_ctx + width, fw.token_budget)
    for k, part in enumerate(parts):
        rows = [multi[j] for j in part]
        # The last chunk may use the context's cache itself; earlier ones a copy.
        past = cache if k == len(parts) - 1 else copy.deepcopy(cache)
        if len(rows) > 1:
            past.batch_repeat_interleave(len(rows))
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attn = torch.zeros((len(rows), n_ctx + width), dtype=torch.long)
        attn[:, :n_ctx] = 1
        r_idx: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for r, i in enumerate(rows):
            body = conts[i][:-1]
            ids[r, : len(body)] = torch.tensor(body)
            attn[r, n_ctx : n_ctx + len(body)] = 1
            r_idx.extend([r] * len(body))
            cols.extend(range(len(body)))
            targets.extend(conts[i][1:])
        owners = lambda rows=rows: [  # noqa: E731
            (ctx, conts[i]) for i in rows for _ in range(len(conts[i]) - 1)
        ]
        with routed(fw.routing, width, r_idx, cols, owners):
            out = fw.decoder(
                input_ids=ids.to(fw.device),
                attention_mask=attn.to(fw.device),
                past_key_values=past,
                use_cache=True,
            )
        lps, hits = fw.token_scores(out.last_hidden_state, r_idx, cols, targets)
        at = 0
        for i in rows:
            n = len(conts[i]) - 1
            token_lp[i] += lps[at : at + n]
            greedy[i] += hits[at : at + n]
            at += n
    flat_lp = [x for row in token_lp for x in row]
    flat_hit = [x for row in greedy for x in row]
    return per_group([group], flat_lp, flat_hit)[0]


def score_rows(fw: Forward, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
    """Each (context, continuation) as its own right-padded row: the obvious computation."""
    import torch

    units = [(g.context, c) for g in groups for c in g.continuations]
    order = sorted(range(len(units)), key=lambda i: -_row_length(units[i]))
    limit = fw.plan.rope_threshold
    batches: list[list[int]] = []
    for i in order:
        n = _row_length(units[i])
        alone = limit is not None and n > limit
        last = batches[-1] if batches else None
        if (
            last is None
            or alone
            or (limit is not None and _row_length(units[last[0]]) > limit)
            or (len(last) + 1) * _row_length(units[last[0]]) > fw.token_budget
        ):
            batches.append([i])
        else:
            last.append(i)
    token_lp_of: dict[int, list[float]] = {}
    greedy_of: dict[int, list[bool]] = {}
    pad = fw.pad_id
    for batch in batches:
        width = _row_length(units[batch[0]])
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for r, i in enumerate(batch):
            ctx, cont = units[i]
            tokens = list(ctx) + list(cont[:-1])
            ids[r, : len(tokens)] = torch.tensor(tokens)
            attn[r, : len(tokens)] = 1
            rows.extend([r] * len(cont))
            cols.extend(range(len(ctx) - 1, len(tokens)))
            targets.extend(cont)
        owners = lambda b=batch: [units[i] for i in b for _ in units[i][1]]  # noqa: E731
        with routed(fw.routing, width, rows, cols, owners):
            out = fw.decoder(input_ids=ids.to(fw.device), attention_mask=attn.to(fw.device))
        lps, hits = fw.token_scores(out.last_hidden_state, rows, cols, targets)
        at = 0
        for i in batch:
            n = len(units[i][1])
            token_lp_of[i], greedy_of[i] = lps[at : at + n], hits[at : at + n]
            at += n
    token_lp = [x for i in range(len(units)) for x in token_lp_of[i]]
    greedy = [x for i in range(len(units)) for x in greedy_of[i]]
    return per_group(groups, token_lp, greedy)


def _row_length(unit: tuple[tuple[int, ...], tuple[int, ...]]) -> int:
    return len(unit[0]) + len(unit[1]) - 1
