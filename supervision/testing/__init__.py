"""Testing helpers for supervision trees: fault injection (``ChaosMonkey``,
``crash_random``) on the runtime clock, reproducible with a seed."""

from foundation._public import fixup_module_metadata

from ._chaos import ChaosMonkey as ChaosMonkey
from ._chaos import ChaosStats as ChaosStats
from ._chaos import crash_random as crash_random

__all__ = ("ChaosMonkey", "ChaosStats", "crash_random")

fixup_module_metadata(__name__, globals())
