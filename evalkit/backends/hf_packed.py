"""The packed forward: a group's context once, followed by every continuation (less its last
token), in one row, with a tree-shaped 4D attention mask (each branch sees the context and its
own earlier tokens) and position ids that restart after the context for every branch. A
preamble that every context of a batch shares (a few-shot prefix) runs once and is kept as a
key/value cache for the batches after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.backends.base import ScoringGroup, TokenScore
from evalkit.backends.hf_forward import Forward, per_group
from evalkit.backends.routing import routed

# Shorter shared prefixes are not worth a cache copy.
MIN_SHARED_PREFIX = 32


def score_packed(fw: Forward, groups: Sequence[ScoringGroup]) -> list[tuple[TokenScore, ...]]:
    import torch

    n_rows = len(groups)
    width = max(g.packed_length for g in groups)
    pad = fw.pad_id
    ids = torch.full((n_rows, width), pad, dtype=torch.long)
    # Padding slots keep position 0: no position id past what the model accepts.
    positions = torch.zeros((n_rows, width), dtype=torch.long)
    segment = torch.full((n_rows, width), -1, dtype=torch.long)
    # Per scored token: (row, column whose hidden state predicts it, target id).
    rows: list[int] = []
    cols: list[int] = []
    targets: list[int] = []
    branched = False
    for r, g in enumerate(groups):
        n_ctx = len(g.context)
        tokens = list(g.context)
        pos = list(range(n_ctx))
        seg = [0] * n_ctx
        for b, cont in enumerate(g.continuations, start=1):
            start = len(tokens)
            body = cont[:-1]
            tokens.extend(body)
            pos.extend(range(n_ctx, n_ctx + len(body)))
            seg.extend([b] * len(body))
            branched = branched or bool(body)
            # The first continuation token is predicted by the context's last position,
            # the next ones by the branch's own tokens.
            predictors = [n_ctx - 1, *range(start, start + len(body))]
            rows.extend([r] * len(cont))
            cols.extend(predictors)
            targets.extend(cont)
        L = len(tokens)
        ids[r, :L] = torch.tensor(tokens)
        positions[r, :L] = torch.tensor(pos)
        segment[r, :L] = torch.tensor(seg)
    windowed = any(w is not None and w < width for w in fw.plan.windows.values())
    shared = shared_prefix(fw, [g.context for g in groups]) if fw.plan.prefix_reuse else 0
    past = prefix_cache(fw, groups[0].context[:shared], len(groups)) if shared else None
    mask: Any = None
    if branched or windowed:
        mask = tree_masks(fw, segment, positions, shared)
    ids = ids[:, shared:].to(fw.device)
    positions = positions[:, shared:].to(fw.device)
    cols = [c - shared for c in cols]
    owners = lambda: [(g.context, c) for g in groups for c in g.continuations for _ in c]  # noqa: E731
    # Without branches or windows, right padding under the plain causal mask leaves every
    # real position untouched, so no mask is needed.
    with routed(fw.routing, ids.shape[1], rows, cols, owners):
        out = fw.decoder(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past,
            use_cache=past is not None,
        )
    token_lp, greedy = fw.token_scores(out.last_hidden_state, rows, cols, targets)
    return per_group(groups, token_lp, greedy)


def tree_masks(fw: Forward, segment: Any, positions: Any, shared: int) -> Any:
    """The packed rows' 4D masks: each branch sees the context and its own earlier tokens;
    a sliding layer also only keys within its window of the query's position (as the
    model's own sliding mask: query - key < window). One mask, or one per layer kind."""
    import torch

    seg_t = segment.to(fw.device)
    pos_t = positions.to(fw.device)
    width = seg_t.shape[1]
    idx = torch.arange(width, device=fw.device)
    causal = idx[None, :] <= idx[:, None]
    key_seg = seg_t[:, None, :]
    tree = causal[None] & ((key_seg == 0) | (key_seg == seg_t[:, :, None]))
    # Queries are the uncached positions; keys are all of them (cached prefix first).
    tree = tree[:, shared:, :]
    distance = (pos_t[:, :, None] - pos_t[:, None, :])[:, shared:, :]
    built: dict[int | None, Any] = {}
    for window in set(fw.plan.windows.values()):
        allowed = tree if window is None else tree & (distance < window)
        mask = torch.zeros(allowed.shape, dtype=fw.torch_dtype, device=fw.device)
        mask.masked_fill_(~allowed, torch.finfo(fw.torch_dtype).min)
        built[window] = mask[:, None]
    if fw.plan.by_layer_type:
        return {kind: built[w] for kind, w in fw.plan.windows.items()}
    return built[fw.plan.windows.get("all")]


def shared_prefix(fw: Forward, contexts: Sequence[tuple[int, ...]]) -> int:
    """Tokens at the start of every context of a batch (a few-shot preamble, say) that can
    be computed once: never the last context token, whose position is scored."""
    if not fw.prefix_reuse:
        return 0
    first = contexts[0]
    limit = min(len(c) for c in contexts) - 1
    n = 0
    while n < limit and all(c[n] == first[n] for c in contexts):
        n += 1
    if fw.prefix is not None:
        # Reuse the previous batch's prefix when it covers enough of this batch's.
        stored = fw.prefix[0]
        m = 0
        while m < min(n, len(stored)) and stored[m] == first[m]:
            m += 1
        if m >= MIN_SHARED_PREFIX:
            return m
    return n if n >= MIN_SHARED_PREFIX and len(contexts) > 1 else 0


def prefix_cache(fw: Forward, prefix: tuple[int, ...], rows: int) -> Any:
    """Key/value cache of `prefix`, repeated for `rows` rows. The last prefix computed is
    kept, so a preamble shared by a whole task is computed once per run, not per batch."""
    import copy

    import torch

    if fw.prefix is None or fw.prefix[0][: len(prefix)] != prefix:
        ids = torch.tensor([prefix], device=fw.device)
        out = fw.decoder(input_ids=ids, use_cache=True)
        fw.prefix = (prefix, out.past_key_values)
    cache = copy.deepcopy(fw.prefix[1])
    extra = len(fw.prefix[0]) - len(prefix)
    if extra:
        # A negative count removes that many tokens (transformers 5 refuses positive ones).
        cache.crop(-extra)
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    return cache
