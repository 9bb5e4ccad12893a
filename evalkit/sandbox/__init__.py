"""Isolated execution of generated code (see docs/code.md): `choose` an isolation, run
programs in a `Sandbox`, read each `Outcome`."""

from evalkit.sandbox.executor import Outcome, Sandbox, available_cores
from evalkit.sandbox.isolation import MODES, Isolation, Mode, choose
from evalkit.sandbox.limits import Limits

__all__ = [
    "MODES",
    "Isolation",
    "Limits",
    "Mode",
    "Outcome",
    "Sandbox",
    "available_cores",
    "choose",
]
