"""Analysis reports as JSON: NaN and infinities (an undefined p-value, say) become null."""

from __future__ import annotations

import math
from typing import Any


def json_safe(x: Any) -> Any:
    """`x` with non-finite floats as None, tuples as lists and mapping keys as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x
