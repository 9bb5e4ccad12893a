"""Router decisions of a sparse mixture-of-experts model, counted per scored token.

transformers' MoE blocks (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE...) route through a router
module that returns `(logits, weights, indices)`, `indices` being the experts each token is sent
to, shape [batch * sequence, top_k]. A forward hook on each router reads those indices — the
routing the model actually applies, not a recomputation — at the positions evalkit scores.

Which tokens count: the positions whose hidden state predicts a scored token (a continuation's
first token is predicted by the context's last position, its next ones by the continuation's own
tokens; the last continuation token is never fed). A packed row shares the context's last
position between continuations; it is counted once per continuation, exactly as if every
continuation had been scored alone, so counts do not depend on packing.

A unit scored over several forwards (the KV-reuse pass: the context alone, then the
continuations over its cache) is counted inside `grouped`: each forward's choices add up, and
the unit is committed once at the end, so it holds what one plain row of it would.

Counts are kept per (context, continuation) unit; the caller maps units back to items.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from evalkit.errors import EvalkitError

Unit = tuple[tuple[int, ...], tuple[int, ...]]
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class RouterSite:
    layer: int  # decoder layer index (from the module name)
    name: str
    module: Any


def find_routers(model: Any) -> list[RouterSite]:
    """Router modules of `model`, by decoder layer. A router is a module whose class name ends
    in `Router` (transformers 5: `MixtralTopKRouter`, `Qwen2MoeTopKRouter`...) inside a
    numbered decoder layer; an empty list means the model is not (a supported) MoE."""
    sites: list[RouterSite] = []
    if not hasattr(model, "named_modules"):
        return sites  # evalkit's plain-torch Llama decoder: dense
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("Router"):
            continue
        m = _LAYER.search(name)
        if m is None:
            continue
        sites.append(RouterSite(int(m.group(1)), name, module))
    layers = [s.layer for s in sites]
    if len(set(layers)) != len(layers):
        return []  # more than one router per layer: a layout this tap does not know
    return sorted(sites, key=lambda s: s.layer)


def expert_count(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for attr in ("num_local_experts", "num_experts", "n_routed_experts"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class RouterTap:
    """Forward hooks on a model's routers that count, per scored token, the experts chosen.

    Outside `scope` the hooks do nothing (the parity guard's plain forwards, prefix caches), so
    the counts hold exactly the scoring forwards' scored positions."""

    def __init__(self, model: Any, sites: Sequence[RouterSite], n_experts: int) -> None:
        self.sites = list(sites)
        self.layers = tuple(s.layer for s in self.sites)
        self.n_experts = n_experts
        # unit -> [layer slot, expert] counts of routed choices
        self.counts: dict[Unit, Any] = {}
        self._flat: Any = None
        self._owners: list[Unit] = []
        self._picked: dict[int, Any] = {}
        # Inside `group`: the forwards' counts, summed per unit until the group ends.
        self._pending: dict[Unit, Any] | None = None
        self._handles = [
            s.module.register_forward_hook(self._hook(slot)) for slot, s in enumerate(self.sites)
        ]
        self.top_k: int | None = None

    @classmethod
    def attach(cls, model: Any) -> RouterTap | None:
        """A tap on `model`'s routers, or None when it has none (a dense model)."""
        sites = find_routers(model)
        n = expert_count(model)
        if not sites or n is None:
            return None
        return cls(model, sites, n)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, slot: int) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._flat is None:
                return
            indices = output[-1] if isinstance(output, tuple) else None
            if indices is None or indices.is_floating_point() or indices.dim() != 2:
                raise EvalkitError(
                    f"router {self.sites[slot].name} returned no [tokens, top_k] expert indices: "
                    "an MoE layout evalkit cannot read (use --no-routing)"
                )
            self._picked[slot] = indices[self._flat]

        return hook

    @contextmanager
    def scope(self, width: int, rows: Sequence[int], cols: Sequence[int], owners: Sequence[Unit]):  # type: ignore[no-untyped-def]
        """Count routing in the forwards inside: scored token i sits at (rows[i], cols[i]) of a
        [batch, width] input and belongs to unit owners[i]."""
        import torch

        if not (len(rows) == len(cols) == len(owners)):
            raise ValueError("rows, cols and owners differ in length")
        device = next(self.sites[0].module.parameters()).device
        self._flat = torch.tensor(rows, device=device) * width + torch.tensor(cols, device=device)
        self._owners = list(owners)
        self._picked = {}
        try:
            yield
            self._commit()
        finally:
            self._flat = None
            self._owners = []
            self._picked = {}

    @contextmanager
    def group(self) -> Iterator[None]:
        """The scopes inside score parts of the same units: their counts add up, and each
        unit is committed once when the group ends (not at all if it fails)."""
        if self._pending is not None:
            raise RuntimeError("router tap groups do not nest")
        self._pending = {}
        try:
            yield
            for unit, c in self._pending.items():
                self.counts.setdefault(unit, c)
        finally:
            self._pending = None

    def _commit(self) -> None:
        import numpy as np

        if not self._owners:
            return
        if len(self._picked) != len(self.sites):
            raise RuntimeError(
                f"routing seen in {len(self._picked)} of {len(self.sites)} router layers"
            )
        index: dict[Unit, int] = {}
        owner_ix = np.array([index.setdefault(u, len(index)) for u in self._owners])
        out = np.zeros((len(index), len(self.sites), self.n_experts), dtype=np.int64)
        for slot in range(len(self.sites)):
            chosen = self._picked[slot].cpu().numpy()  # [tokens, top_k]
            k = chosen.shape[1]
            if self.top_k is None:
                self.top_k = k
            np.add.at(out[:, slot, :], (np.repeat(owner_ix, k), chosen.reshape(-1)), 1)
        if self._pending is not None:
            for unit, i in index.items():
                before = self._pending.get(unit)
                self._pending[unit] = out[i] if before is None else before + out[i]
            return
        for unit, i in index.items():
            if unit in self.counts:
                continue  # a unit scored twice (a cache miss and a refill) counts once
            self.counts[unit] = out[i]


@contextmanager
def routed(
    tap: RouterTap | None,
    width: int,
    rows: Sequence[int],
    cols: Sequence[int],
    owners: Any,
) -> Iterator[None]:
    """`tap.scope(...)`, or nothing without a tap. `owners` is a callable giving the owner
    list, so a dense model never builds it."""
    if tap is None:
        yield
        return
    with tap.scope(width, rows, cols, owners()):
        yield


@contextmanager
def grouped(tap: RouterTap | None) -> Iterator[None]:
    """`tap.group()`, or nothing without a tap."""
    if tap is None:
        yield
        return
    with tap.group():
        yield
