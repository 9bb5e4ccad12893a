"""Slice fit: bits per byte of a checkpoint on its training slices' sample documents. The one
decision input that needs the model again (`evalkit attribute --slice-fit`): it loads the
checkpoint named in a run's manifest and runs the documents through the engine, as the
execute stage does, with the same result cache."""

from __future__ import annotations

from pathlib import Path

from evalkit.backends.base import Backend
from evalkit.engine import Engine, EngineOptions
from evalkit.errors import EvalkitError
from evalkit.pipeline.execute import load_backend, open_cache
from evalkit.provenance import Provenance, find_provenance

PathLike = str | Path


def slice_fit(
    checkpoint: PathLike,
    *,
    provenance: PathLike | Provenance | None = None,
    max_documents: int = 200,
    backend: str | Backend = "auto",
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """Bits per byte of `checkpoint` on each slice's sample documents (Paloma-style: summed
    log-prob of whole documents over their UTF-8 bytes), for slices that list sample documents.
    """
    from evalkit.analysis.contamination import iter_documents
    from evalkit.metrics import bits_per_byte
    from evalkit.requests import RollingLoglikelihood, RollingResult

    ckpt = Path(checkpoint)
    if isinstance(provenance, Provenance):
        prov: Provenance | None = provenance
    else:
        prov = find_provenance(ckpt, Path(provenance) if provenance else None)
    if prov is None:
        raise EvalkitError(f"{ckpt} has no provenance.yaml (give --provenance FILE)")
    docs: dict[str, list[str]] = {}
    for s in prov.slices:
        if s.sample_documents is None:
            continue
        if not Path(s.sample_documents).is_file():
            raise EvalkitError(f"slice {s.name}: sample documents not found: {s.sample_documents}")
        texts: list[str] = []
        for text in iter_documents(Path(s.sample_documents)):
            if len(texts) >= max_documents:
                break
            if text.strip():
                texts.append(text)
        docs[s.name] = texts
    if not docs:
        raise EvalkitError(f"{ckpt}: no slice lists sample_documents to measure fit on")
    cache = open_cache(cache_dir, use_cache)
    model = load_backend(ckpt, backend, device, dtype) if isinstance(backend, str) else backend
    engine = Engine(model, cache, EngineOptions(truncation="left", progress=progress))
    requests = {name: [RollingLoglikelihood(t) for t in texts] for name, texts in docs.items()}
    try:
        result = engine.run([r for rs in requests.values() for r in rs])
    finally:
        if cache is not None:
            cache.close()
    fit: dict[str, float] = {}
    for name, rs in requests.items():
        total_lp, text = 0.0, ""
        for r in rs:
            resp = result.responses[r.hash]
            assert isinstance(resp, RollingResult)
            total_lp += resp.logprob
            text += r.text
        fit[name] = bits_per_byte(total_lp, text)
    return fit
