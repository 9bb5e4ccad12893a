"""Make a deliberately damaged copy of a checkpoint: seeded Gaussian noise on its weights.

Every weight matrix W (norms and other 1-D tensors are left alone) becomes
``W + scale * std(W) * N(0, 1)``, so ``--scale`` is the noise relative to each matrix's own
spread. The copy keeps the tokenizer and config, and its ``provenance.yaml`` (when the source
has one) names the source as parent and records the damage.

Used to check that ``evalkit gate`` catches a regression::

    python examples/damage_checkpoint.py examples/checkpoints/tiny-base /tmp/tiny-damaged --scale 0.5
    python examples/damage_checkpoint.py examples/checkpoints/tiny-base /tmp/tiny-dented --scale 0.1

Importing this module has no side effects; tests call :func:`damage`.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def damage(src: Path, out: Path, *, scale: float, seed: int = 0) -> Path:
    """Copy checkpoint `src` to `out` with noise of relative size `scale` on its matrices."""
    import torch
    import yaml
    from safetensors.torch import load_file, save_file

    if scale < 0:
        raise ValueError("scale must be >= 0")
    if out.exists():
        raise FileExistsError(f"{out} exists")
    weights = sorted(src.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"no *.safetensors weights in {src}")
    out.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and p.suffix not in WEIGHT_SUFFIXES and p.name != "provenance.yaml":
            shutil.copy2(p, out / p.name)
    gen = torch.Generator().manual_seed(seed)
    for path in weights:
        tensors = load_file(str(path))
        noisy = {}
        for name in sorted(tensors):
            t = tensors[name]
            if t.ndim >= 2 and t.is_floating_point() and scale > 0:
                noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
                t = (t.float() + scale * t.float().std() * noise).to(t.dtype)
            noisy[name] = t.contiguous()
        save_file(noisy, str(out / path.name), metadata={"format": "pt"})
    prov_path = src / "provenance.yaml"
    if prov_path.is_file():
        prov = yaml.safe_load(prov_path.read_text(encoding="utf-8"))
        ckpt = dict(prov.get("checkpoint") or {})
        ckpt["parent"] = str(ckpt.get("run") or src.name)
        ckpt["run"] = f"{ckpt.get('run') or src.name}-damaged-{scale:g}"
        # `tuning` is the schema's free-text "how it was derived from its parent" field.
        ckpt["tuning"] = f"damaged: weight noise of relative std {scale:g}, seed {seed}"
        prov["checkpoint"] = ckpt
        (out / "provenance.yaml").write_text(
            yaml.safe_dump(prov, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="checkpoint to copy")
    p.add_argument("out", type=Path, help="new checkpoint directory (must not exist)")
    p.add_argument("--scale", type=float, default=0.5, help="noise std relative to each matrix's")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    damage(args.src, args.out, scale=args.scale, seed=args.seed)
    print(f"damaged copy (scale {args.scale:g}, seed {args.seed}) written to {args.out}")


if __name__ == "__main__":
    main()
