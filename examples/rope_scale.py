"""Copy a checkpoint with RoPE scaling bolted on, no training (issue 16, the long-context claim).

The copy keeps the weights, tokenizer and provenance and rewrites ``config.json``'s
``rope_parameters`` (transformers 5's name; ``rope_scaling`` in 4.x, also written so either
version reads it): ``linear`` divides every position by ``--factor``; ``yarn`` interpolates the
low frequencies only and keeps the high ones, relative to ``--original`` (the length the model
was trained at). ``max_position_embeddings`` becomes ``--window`` (default: original x factor).
No ``dynamic``: transformers 5 starts dynamic NTK scaling only past ``max_position_embeddings``,
so it could not act inside the window evalkit reads from the same field.

Usage (the copies measured in docs/longctx.md)::

    python examples/rope_scale.py examples/checkpoints/retrieval-control /tmp/retr-linear4 \\
        --kind linear --factor 4 --original 256
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any


def scaled_config(
    cfg: dict[str, Any], kind: str, factor: float, original: int, window: int
) -> dict[str, Any]:
    out = dict(cfg)
    base = dict(cfg.get("rope_parameters") or {})
    theta = base.get("rope_theta", cfg.get("rope_theta", 10000.0))
    params: dict[str, Any] = {"rope_type": kind, "factor": factor, "rope_theta": theta}
    if kind == "yarn":
        params["original_max_position_embeddings"] = original
    out["rope_parameters"] = params
    out["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
    out["max_position_embeddings"] = window
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--kind", choices=("linear", "yarn"), required=True)
    p.add_argument("--factor", type=float, required=True)
    p.add_argument("--original", type=int, required=True, help="the length trained at")
    p.add_argument("--window", type=int, help="max_position_embeddings (original x factor)")
    a = p.parse_args()
    if a.out.exists():
        raise SystemExit(f"{a.out} exists")
    shutil.copytree(a.src, a.out)
    cfg = json.loads((a.src / "config.json").read_text())
    window = a.window or int(a.original * a.factor)
    new = scaled_config(cfg, a.kind, a.factor, a.original, window)
    (a.out / "config.json").write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
