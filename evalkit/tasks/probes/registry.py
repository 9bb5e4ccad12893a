"""The probe kinds by their YAML `probe:` name, and the `kind: probe` spec loader.

Each probe yields items tagged with everything a summary needs (`k`, `seed`, `condition`,
`test_doc`...); task-level numbers such as the slope of a few-shot curve are `Summary`s
computed from the per-item results by `evalkit.aggregate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.tasks.probes.common import Probe, ProbeSpec
from evalkit.tasks.probes.fewshot import FewShotCurveTask
from evalkit.tasks.probes.labels import LabelProbeTask
from evalkit.tasks.probes.niah import NiahTask
from evalkit.tasks.probes.token_level import InductionTask, OlssonTask

PROBES: Mapping[str, type[Probe] | type[NiahTask]] = {
    "fewshot_curve": FewShotCurveTask,
    "label_probe": LabelProbeTask,
    "induction": InductionTask,
    "olsson": OlssonTask,
    "niah": NiahTask,
}


def make_probe(spec: ProbeSpec) -> Probe | NiahTask:
    try:
        cls = PROBES[spec.probe]
    except KeyError:
        raise EvalkitError(
            f"malformed task spec {spec.source_file}: unknown probe {spec.probe!r} "
            f"(known: {', '.join(sorted(PROBES))})"
        ) from None
    return cls(spec)


_COMMON = {"name", "family", "version", "description", "kind", "probe"}


def load_probe_spec(path: Any, raw: Mapping[str, Any]) -> ProbeSpec:
    for key in ("name", "family", "version", "probe"):
        if key not in raw:
            raise EvalkitError(f"malformed task spec {path}: missing required key {key!r}")
    spec = ProbeSpec(
        name=str(raw["name"]),
        family=str(raw["family"]),
        version=str(raw["version"]),
        probe=str(raw["probe"]),
        source_file=path,
        description=str(raw.get("description", "")),
        params={k: v for k, v in raw.items() if k not in _COMMON},
    )
    make_probe(spec)  # validates the probe's keys now, naming the file
    return spec
