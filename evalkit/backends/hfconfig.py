"""A Hugging Face checkpoint's config.json, read without transformers.

`transformers.AutoConfig` imports its generation stack (~2 s of CPU); the backends only need a
few fields, and reading the file itself also keeps class defaults out of them (the window is
what the checkpoint states)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError


class ConfigView:
    """config.json through attributes (nested objects too), as code that reads
    `model.config.<field>` expects."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            setattr(self, key, ConfigView(value) if isinstance(value, Mapping) else value)


def read_config(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EvalkitError(f"unreadable config in {checkpoint}: {first}") from None
    if not isinstance(config, dict):
        raise EvalkitError(f"unreadable config in {checkpoint}: not a JSON object")
    return config
