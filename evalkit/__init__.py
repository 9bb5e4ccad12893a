"""evalkit: evaluate base language-model checkpoints.

The Python API lives in `evalkit.api`; the names here import it lazily so that importing
evalkit (and `evalkit --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from evalkit.analysis.compare import CompareReport
    from evalkit.analysis.gate import GateVerdict
    from evalkit.api import ScoreRun


def score(*args: Any, **kwargs: Any) -> ScoreRun:
    """Score a checkpoint on a suite or tasks; see `evalkit.api.score`."""
    from evalkit.api import score as _score

    return _score(*args, **kwargs)


def rerun(*args: Any, **kwargs: Any) -> ScoreRun:
    """Score a stored run again from the config its manifest records; see `evalkit.api.rerun`."""
    from evalkit.api import rerun as _rerun

    return _rerun(*args, **kwargs)


def gate(*args: Any, **kwargs: Any) -> GateVerdict:
    """Gate a candidate run against a baseline under a policy; see `evalkit.api.gate`."""
    from evalkit.api import gate as _gate

    verdict: GateVerdict = _gate(*args, **kwargs)
    return verdict


def compare(*args: Any, **kwargs: Any) -> CompareReport:
    """Paired comparison of runs or checkpoints; see `evalkit.api.compare`."""
    from evalkit.api import compare as _compare

    report: CompareReport = _compare(*args, **kwargs)
    return report


def make_report(*args: Any, **kwargs: Any) -> Any:
    """Write an HTML + markdown report of runs; see `evalkit.api.make_report`.

    (Not `report`: that name is the `evalkit.report` package.)"""
    from evalkit.api import make_report as _make_report

    return _make_report(*args, **kwargs)


__all__ = ["__version__", "compare", "gate", "make_report", "rerun", "score"]
