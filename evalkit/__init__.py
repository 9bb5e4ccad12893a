"""evalkit: evaluate base language-model checkpoints.

The Python API lives in `evalkit.api`; the names here import it lazily so that importing
evalkit (and `evalkit --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from evalkit.api import ScoreRun


def score(*args: Any, **kwargs: Any) -> ScoreRun:
    """Score a checkpoint on a suite or tasks; see `evalkit.api.score`."""
    from evalkit.api import score as _score

    return _score(*args, **kwargs)


__all__ = ["__version__", "score"]
